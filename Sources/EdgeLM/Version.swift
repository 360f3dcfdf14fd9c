public enum EdgeLMVersion { public static let string = "0.1.0" }
