/// IEEE half-precision conversions that are exact and do not depend on the platform's Float16 support.
public enum HalfFloat {
    /// Half bits to Float.
    @inline(__always)
    public static func toFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1F
        var man = UInt32(h & 0x3FF)
        if exp == 0 {
            if man == 0 { return Float(bitPattern: sign) }
            var e: UInt32 = 0
            while man & 0x400 == 0 { man <<= 1; e += 1 }
            return Float(bitPattern: sign | ((113 - e) << 23) | ((man & 0x3FF) << 13))
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (man << 13)) }
        return Float(bitPattern: sign | ((exp + 112) << 23) | (man << 13))
    }

    /// Float to half bits, rounding to nearest even; overflow gives infinity.
    @inline(__always)
    public static func fromFloat(_ f: Float) -> UInt16 {
        let bits = f.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exp = Int((bits >> 23) & 0xFF)
        let man = bits & 0x7F_FFFF
        if exp == 0xFF { return sign | 0x7C00 | (man != 0 ? 0x200 : 0) }
        let e = exp - 127 + 15
        if e >= 31 { return sign | 0x7C00 }
        if e <= 0 {
            if e < -10 { return sign }
            let m = man | 0x80_0000
            let shift = UInt32(14 - e)
            var half = m >> shift
            let rem = m & ((1 << shift) - 1)
            let midpoint = UInt32(1) << (shift - 1)
            if rem > midpoint || (rem == midpoint && half & 1 == 1) { half += 1 }
            return sign | UInt16(half)
        }
        var half = UInt32(e) << 10 | (man >> 13)
        let rem = man & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && half & 1 == 1) { half += 1 }
        return sign | UInt16(half)
    }
}
