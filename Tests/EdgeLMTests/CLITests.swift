import Foundation
import Testing
@testable import EdgeLM

/// The `edgelm` binary as users run it: conversion under failure and runtime edge cases.
@Suite struct CLITests {
    /// The edgelm binary built beside the test bundle.
    static var binary: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("edgelm").path
    }

    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs `bash -c script` with EDGELM set to the binary.
    @discardableResult
    static func sh(_ script: String) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", script]
        p.environment = ProcessInfo.processInfo.environment.merging(["EDGELM": binary]) { $1 }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Run(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
    }

    var available: Bool {
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            if Fixtures.isCI { Issue.record("the edgelm binary is missing at \(Self.binary)") }
            return false
        }
        return Fixtures.available(Fixtures.stories + "stories260K.gguf")
    }

    func model() throws -> String { try ConvertedModels.stories("q8", ConversionOptions(type: .q8)) }

    /// SIGKILL in the middle of writing leaves the previous output untouched and no file under the target name.
    @Test func killedConversionLeavesPreviousOutput() throws {
        guard available else { return }
        let dir = TemporaryDirectory()
        try SyntheticCheckpoint.write(.s15m, type: .f16, to: dir.file("s15m.gguf"))
        try Data("previous".utf8).write(to: URL(fileURLWithPath: dir.file("out.edgelm")))
        let r = try Self.sh(
            """
            cd '\(dir.path)'
            "$EDGELM" quantize s15m.gguf -o out.edgelm --type q4 --force --quiet & pid=$!
            for i in $(seq 1 4000); do
                f=$(ls -a | grep '^\\.out\\.edgelm\\.tmp-' | head -1)
                if [ -n "$f" ] && [ "$(stat -c %s "$f")" -gt 2000000 ]; then break; fi
                sleep 0.001
            done
            kill -9 $pid; wait $pid; echo "killed with $?"; ls -a
            """)
        #expect(r.stdout.contains("killed with 137"), "\(r.stdout) \(r.stderr)")
        #expect(try String(contentsOfFile: dir.file("out.edgelm"), encoding: .utf8) == "previous")
    }

    /// A full disk (RLIMIT_FSIZE, the write fails with EFBIG) gives a clear error and no output file.
    @Test func failedWriteLeavesNoFile() throws {
        // Under ThreadSanitizer the sanitizer runtime itself dies on RLIMIT_FSIZE before edgelm writes.
        guard available, !Fixtures.underSanitizer else { return }
        let dir = TemporaryDirectory()
        let r = try Self.sh(
            """
            cd '\(dir.path)'
            trap '' XFSZ; ulimit -f 100
            "$EDGELM" quantize '\(Fixtures.storiesGGUF)' -o out.edgelm --type f32
            """)
        #expect(r.status != 0)
        #expect(r.stderr.contains("write failed"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test func refusesToOverwriteWithoutForce() throws {
        guard available else { return }
        let dir = TemporaryDirectory()
        try Data("keep".utf8).write(to: URL(fileURLWithPath: dir.file("o.edgelm")))
        let r = try Self.sh("\"$EDGELM\" quantize '\(Fixtures.storiesGGUF)' -o '\(dir.file("o.edgelm"))' --type q8")
        #expect(r.status != 0 && r.stderr.contains("--force"))
        #expect(try String(contentsOfFile: dir.file("o.edgelm"), encoding: .utf8) == "keep")
        let missing = try Self.sh("\"$EDGELM\" quantize /nonexistent.gguf -o '\(dir.file("x.edgelm"))' --type q8")
        #expect(missing.status != 0 && missing.stderr.contains("/nonexistent.gguf"))
    }

    /// Calibration settings that cannot work are refused by name, leaving no output; a GPTQ conversion
    /// records its method, which `inspect` shows.
    @Test func calibrationOptionsAreCheckedAndRecorded() throws {
        guard available, Fixtures.available("text/tinystories-dev.txt") else { return }
        let dir = TemporaryDirectory(), text = Fixtures.path("text/tinystories-dev.txt"), out = dir.file("c.edgelm")
        let noText = try Self.sh("\"$EDGELM\" quantize '\(Fixtures.storiesGGUF)' -o '\(out)' --type q4 --gptq")
        #expect(noText.status != 0 && noText.stderr.contains("--gptq needs --calibrate"))
        let q8 = try Self.sh("\"$EDGELM\" quantize '\(Fixtures.storiesGGUF)' -o '\(out)' --type q8 --calibrate '\(text)'")
        #expect(q8.status != 0 && q8.stderr.contains("q8 with --gptq"))
        let f16 = try Self.sh("\"$EDGELM\" quantize '\(Fixtures.storiesGGUF)' -o '\(out)' --type f16 --calibrate '\(text)' --gptq")
        #expect(f16.status != 0 && f16.stderr.contains("f32 and f16 are not rounded"))
        #expect(!FileManager.default.fileExists(atPath: out))
        let ok = try Self.sh(
            "\"$EDGELM\" quantize '\(Fixtures.storiesGGUF)' -o '\(out)' --type q4 --calibrate '\(text)' --calibration-tokens 2048 --gptq --quiet && \"$EDGELM\" inspect '\(out)'"
        )
        #expect(ok.status == 0 && ok.stdout.contains("q4 scales and codes calibrated (GPTQ) on 2048 tokens"), "\(ok.stderr)")
        let unordered = try Self.sh("\"$EDGELM\" quantize '\(Fixtures.storiesGGUF)' -o '\(out)' --type q4 --calibrate '\(text)' --sequential --force")
        #expect(unordered.status != 0 && unordered.stderr.contains("--sequential needs --gptq"))
        let sequential = try Self.sh(
            "\"$EDGELM\" quantize '\(Fixtures.storiesGGUF)' -o '\(out)' --type q4 --calibrate '\(text)' --calibration-tokens 1024 --gptq --sequential --force 2>&1 && \"$EDGELM\" inspect '\(out)'"
        )
        #expect(sequential.status == 0 && sequential.stdout.contains("sequential GPTQ: 20/20 matrix groups"), "\(sequential.stdout)")
        #expect(sequential.stdout.contains("(sequential GPTQ with error compensation) on 1024 tokens"), "\(sequential.stdout)")
    }

    /// q4a and q4n files convert, say what they hold, and generate; calibration and GPTQ accept them.
    @Test(arguments: ["q4a", "q4n"]) func fourBitVariantsConvertInspectAndGenerate(type: String) throws {
        guard available, Fixtures.available("text/tinystories-dev.txt") else { return }
        let dir = TemporaryDirectory(), out = dir.file("a.edgelm"), text = Fixtures.path("text/tinystories-dev.txt")
        let r = try Self.sh(
            """
            "$EDGELM" quantize '\(Fixtures.storiesGGUF)' -o '\(out)' --type \(type) --calibrate '\(text)' --calibration-tokens 1024 --gptq --quiet \
              && "$EDGELM" inspect '\(out)' && "$EDGELM" generate -m '\(out)' -p 'Once upon a time' -n 16 --temperature 0 --quiet
            """)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("quantization: \(type), group 32, embedding/output q8"), "\(r.stdout)")
        #expect(r.stdout.contains("\(type) scales and codes calibrated (GPTQ) on 1024 tokens"), "\(r.stdout)")
        #expect(r.stdout.contains("blk.0.ffn_down") && r.stdout.contains(" \(type) "), "\(r.stdout)")
        #expect(r.stdout.split(separator: "\n").last.map { $0.split(separator: " ").count >= 4 } == true, "\(r.stdout)")
    }

    /// `--tensor-type` rules give matching matrices their own scheme and group size (first match wins), are
    /// recorded and shown by `inspect`, and the mixed file runs: layer 0 at q8 in a q4 file measured
    /// 0.0702 mean KLD against 0.0903 for plain q4 (8 windows of the dev text). Rules that cannot apply are
    /// refused by name, leaving no output.
    @Test func tensorTypeRulesMixSchemes() throws {
        guard available, Fixtures.available("text/tinystories-dev.txt") else { return }
        let dir = TemporaryDirectory(), out = dir.file("m.edgelm"), src = Fixtures.storiesGGUF
        let refused: [(String, String)] = [
            ("--type q4 --tensor-type 'blk.9.*=q8'", "'blk.9.*' matches none of the attention and FFN matrices"),
            ("--type q4 --tensor-type 'blk.0.*'", "expected PATTERN=TYPE[:GROUP]"),
            ("--type q4 --tensor-type 'blk.0.*=q5'", "the type must be one of f32, f16, q8, q4"),
            ("--type q4 --tensor-type '*=q4:48'", "must be 0 (per channel) or a multiple of 32"),
            ("--type q4 --tensor-type '*=q4:x'", "group size 'x' is not a number"),
            ("--type q4 --tensor-type 'blk.0.attn_k=f16'", "blk.0.attn_q is q4 but blk.0.attn_k is f16; matrices that read one input"),
        ]
        for (args, expected) in refused {
            let r = try Self.sh("\"$EDGELM\" quantize '\(src)' -o '\(out)' \(args)")
            #expect(r.status != 0 && r.stderr.contains(expected), "\(args): \(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
        let mixed = try Self.sh(
            """
            "$EDGELM" quantize '\(src)' -o '\(out)' --type q4 --tensor-type 'blk.0.*=q8' --tensor-type '*.ffn_down=q4:64' \
              --tensor-type '*.ffn_down=q8' --quiet && "$EDGELM" inspect '\(out)'
            """)
        #expect(mixed.status == 0, "\(mixed.stderr)")
        #expect(mixed.stdout.contains("per-tensor types: blk.0.*=q8:0, *.ffn_down=q4:64, *.ffn_down=q8:0"), "\(mixed.stdout)")
        let file = try ModelFile(path: out)
        func plan(_ name: String) throws -> String {
            let e = try file.entry(name)
            return "\(e.scheme.rawValue):\(e.groupSize)"
        }
        #expect(try plan("blk.0.attn_q") == "q8:0" && plan("blk.0.ffn_down") == "q8:0")
        #expect(try plan("blk.1.ffn_down") == "q4:64" && plan("blk.1.attn_q") == "q4:32" && plan("token_embd") == "q8:32")
        let f32 = try ConvertedModels.stories("f32", ConversionOptions(type: .f32))
        func kld(_ path: String) throws -> Double {
            let p = try Self.sh(
                "\"$EDGELM\" perplexity -m '\(path)' --kv-type f32 --reference '\(f32)' -f '\(Fixtures.path("text/tinystories-dev.txt"))' --chunks 8 --json")
            let j = try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as? [String: Any]
            return try #require(j?["kld_mean"] as? Double, "\(p.stderr)")
        }
        let plain = try ConvertedModels.stories("q4", ConversionOptions(type: .q4))
        let layer0 = dir.file("l0.edgelm")
        #expect(try Self.sh("\"$EDGELM\" quantize '\(src)' -o '\(layer0)' --type q4 --tensor-type 'blk.0.*=q8' --quiet").status == 0)
        let (q4, mixedKLD) = (try kld(plain), try kld(layer0))
        #expect(q4 > 0.085 && q4 < 0.095 && mixedKLD < 0.075 && mixedKLD > 0.065, "q4 \(q4), layer 0 at q8 \(mixedKLD)")
    }

    @Test func generateEdgeCases() throws {
        guard available else { return }
        let m = try model()
        let dir = TemporaryDirectory()
        try Data([0x4F, 0x6E, 0xC3, 0x28]).write(to: URL(fileURLWithPath: dir.file("bad.txt")))
        try String(repeating: "Once upon a time ", count: 200).write(toFile: dir.file("long.txt"), atomically: true, encoding: .utf8)
        let cases: [(String, Bool, String)] = [
            ("-p '' -n 4 --temperature 0", true, "prompt: 1 tokens"),  // empty prompt: BOS only
            ("-p '<s></s>' -n 4 --temperature 0", true, "generated: 4 tokens"),  // written as text, not control tokens
            ("-p 'Once' -n 0", true, "generated: 0 tokens"),
            ("-f '\(dir.file("long.txt"))' -n 4", false, "longer than the context of 512"),
            ("-f '\(dir.file("bad.txt"))'", false, "not valid UTF-8"),
            ("-p x -t 0", false, "--threads 0"),
            ("-p x --temperature -1", false, "--temperature"),
            ("-p x --top-p 0", false, "--top-p"),
            ("-p x --top-p 1.5", false, "--top-p"),
            ("-p x -n -3", false, "-n -3: must be >= 0, or -1 for no limit"),
            ("-p x -n -1 -c 16 --seed -1 --temperature 0", true, "stop: "),
            ("-p '\(String(repeating: "word ", count: 40))' -c 16", false, "longer than the context of 16"),
            ("-p x -t 64 -n 2 --temperature 0", true, "warning: 64 threads"),
            ("-p x -f '\(dir.file("long.txt"))'", false, "either -p or -f"),
        ]
        for (args, ok, expected) in cases {
            let r = try Self.sh("\"$EDGELM\" generate -m '\(m)' \(args)")
            #expect((r.status == 0) == ok, "\(args): status \(r.status) \(r.stderr)")
            #expect(r.stderr.contains(expected), "\(args): \(r.stderr)")
        }
    }

    @Test func inspectVerifyNamesTheCorruptTensor() throws {
        guard available else { return }
        let dir = TemporaryDirectory()
        let file = try ModelFile(path: try model())
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: file.path)))
        let e = try file.entry("blk.2.attn_v")
        bytes[file.header.dataOffset + e.offset + 5] ^= 0x04
        try Data(bytes).write(to: URL(fileURLWithPath: dir.file("c.edgelm")))
        let r = try Self.sh("\"$EDGELM\" inspect '\(dir.file("c.edgelm"))' --verify")
        #expect(r.status != 0 && r.stderr.contains("blk.2.attn_v"))
        let ok = try Self.sh("\"$EDGELM\" inspect '\(file.path)' --verify --json")
        let json = try JSONSerialization.jsonObject(with: Data(ok.stdout.utf8)) as? [String: Any]
        #expect(json?["checksums_verified"] as? Bool == true)
        #expect((json?["tensors"] as? [Any])?.count == 47)
        #expect(json?["parameters"] as? Int == 260_032)
        let gen = try Self.sh("\"$EDGELM\" generate -m '\(dir.file("c.edgelm"))' -p x --verify")
        #expect(gen.status != 0 && gen.stderr.contains("blk.2.attn_v"))
    }

    @Test func perplexityAndBenchJSON() throws {
        guard available, Fixtures.available("text/tinystories-dev.txt") else { return }
        let f32 = try ConvertedModels.stories("f32", ConversionOptions(type: .f32))
        let p = try Self.sh(
            "\"$EDGELM\" perplexity -m '\(try model())' --reference '\(f32)' -f '\(Fixtures.path("text/tinystories-dev.txt"))' --chunks 2 --json")
        let j = try JSONSerialization.jsonObject(with: Data(p.stdout.utf8)) as? [String: Any]
        #expect(j?["tokens"] as? Int == 510)
        for key in ["ppl", "reference_ppl", "kld_mean", "kld_p99", "same_top1"] { #expect(j?[key] is Double, "\(key)") }
        let b = try Self.sh("\"$EDGELM\" bench -m '\(try model())' -p 16 -n 8 -r 2 --json")
        let bj = try JSONSerialization.jsonObject(with: Data(b.stdout.utf8)) as? [String: Any]
        let results = bj?["results"] as? [[String: Any]] ?? []
        #expect(results.map { $0["test"] as? String } == ["pp16", "tg8"])
        #expect((results.last?["samples"] as? [Double])?.count == 2)
        #expect(results.last?["bandwidth_ratio"] is Double)
        // llama-bench's lists: one pp test per -p value and one tg test per -n value, for each -t count.
        let lists = try Self.sh("\"$EDGELM\" bench -m '\(try model())' -p 8,16 -n 4,0 -t 1,2 -r 1 -o json")
        let runs = try JSONSerialization.jsonObject(with: Data(lists.stdout.utf8)) as? [[String: Any]] ?? []
        #expect(runs.map { $0["threads"] as? Int } == [1, 2], "\(lists.stderr)")
        for run in runs { #expect((run["results"] as? [[String: Any]])?.map { $0["test"] as? String } == ["pp8", "pp16", "tg4"]) }
        let csv = try Self.sh("\"$EDGELM\" bench -m '\(try model())' -p 8 -n 4 -r 1 -o csv")
        let rows = csv.stdout.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        #expect(rows.first?.first == "model" && rows.count == 3 && rows.allSatisfy { $0.count == 12 }, "\(csv.stdout)")
        #expect(rows.dropFirst().map { String($0[7]) } == ["pp8", "tg4"])
        let breakdown = try Self.sh("\"$EDGELM\" bench -m '\(try model())' --breakdown -n 4 -r 1 -o json")
        let bd = try JSONSerialization.jsonObject(with: Data(breakdown.stdout.utf8)) as? [String: Any]
        #expect((bd?["rows"] as? [[String: Any]])?.count == ForwardProfile.Stage.allCases.count + 2, "\(breakdown.stderr)")
        let table = try Self.sh("\"$EDGELM\" bench -m '\(try model())' --breakdown -n 4 -r 1")
        #expect(table.status == 0 && table.stdout.contains("| attention | ") && table.stdout.contains("| final norm and output head | "), "\(table.stdout)")
        let prompt = try Self.sh("\"$EDGELM\" bench -m '\(try model())' --breakdown -n 0 -p 8 -r 1")
        #expect(prompt.status == 0 && prompt.stdout.contains(": pp8, ") && prompt.stdout.contains("| attention | "), "\(prompt.stdout)")
        for (args, words) in [
            ("-t 1,2 -p hi", "'hi' is invalid for '-p"), ("-p -1", "must be >= 0"), ("-t 1,x", "-t"),
            ("--breakdown --lookup", "--breakdown times plain decoding"),
            ("--ignore-eos -n 4", "--ignore-eos belongs to the speculative mode"),
            ("--breakdown -n 4,8", "one count"), ("--breakdown -n 0 -p 8,16", "one prompt length"),
        ] {
            let bad = try Self.sh("\"$EDGELM\" bench -m '\(try model())' \(args)")
            #expect(bad.status != 0 && bad.stderr.contains(words), "\(args): \(bad.stderr)")
        }
        let single = try Self.sh("\"$EDGELM\" generate -m '\(try model())' -t 1,2 -p hi -n 2")
        #expect(single.status != 0 && single.stderr.contains("only bench takes a list"), "\(single.stderr)")
    }

    /// `EDGELM_KERNELS` forces each level this CPU has (bench names it) and refuses unknown or missing ones.
    @Test func kernelLevelIsForcedOrRefused() throws {
        guard available else { return }
        let m = try model()
        for level in KernelLevel.supported {
            let b = try Self.sh("EDGELM_KERNELS=\(level.name) \"$EDGELM\" bench -m '\(m)' -p 8 -n 4 -r 1 --json")
            let bj = try JSONSerialization.jsonObject(with: Data(b.stdout.utf8)) as? [String: Any]
            #expect(bj?["kernels"] as? String == level.name, "\(b.stderr)")
        }
        let unknown = try Self.sh("EDGELM_KERNELS=sse9 \"$EDGELM\" generate -m '\(m)' -p hi -n 2")
        #expect(unknown.status != 0 && unknown.stderr.contains("EDGELM_KERNELS: unknown kernel level 'sse9'"), "\(unknown.stderr)")
        if let missing = KernelLevel.allCases.first(where: { !$0.isSupported }) {
            let r = try Self.sh("EDGELM_KERNELS=\(missing.name) \"$EDGELM\" generate -m '\(m)' -p hi -n 2")
            #expect(r.status != 0 && r.stderr.contains("'\(missing.name)' is not supported by this CPU"), "\(r.stderr)")
        }
    }
}
