#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A read-only memory mapping of a whole file. Pages are loaded lazily by the kernel and stay
/// file-backed (they count as shared, not anonymous, memory), so weights can be used in place.
public final class MappedFile: @unchecked Sendable {
    /// Path the file was opened from.
    public let path: String
    /// The mapped bytes (empty for an empty file).
    public let bytes: UnsafeRawBufferPointer
    private let base: UnsafeMutableRawPointer?
    private let isHeapCopy: Bool

    /// Maps `path` read-only.
    public init(path: String) throws(EdgeLMError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, message: "cannot open: \(Errno.describe(errno))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(path: path, message: "cannot stat: \(Errno.describe(errno))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .io(path: path, message: "not a regular file") }
        let size = Int(st.st_size)
        isHeapCopy = false
        if size == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw .io(path: path, message: "cannot map \(size) bytes: \(Errno.describe(errno))")
        }
        base = p
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    /// An in-memory "file" holding a copy of `data` (for parsing bytes that are not on disk, e.g. fuzzing).
    public init(copying data: UnsafeRawBufferPointer, name: String) {
        path = name
        isHeapCopy = true
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(1, data.count), alignment: 4096)
        if let src = data.baseAddress { p.copyMemory(from: src, byteCount: data.count) }
        base = p
        bytes = UnsafeRawBufferPointer(start: p, count: data.count)
    }

    /// Tells the kernel that the whole pages of `region` (bytes of this mapping) are read at random, a
    /// few bytes at a time: a page fault there then maps that page alone, without the 64 KiB of cached
    /// neighbours Linux maps around a fault or any read-ahead. For the embedding table, of which a
    /// token reads one row. No effect on a heap copy or outside the mapping.
    public func adviseRandomAccess(_ region: UnsafeRawBufferPointer) { advise(region, MADV_RANDOM) }

    /// Drops this process's mapping of the whole pages of `region` (the page cache keeps them; a later read maps
    /// them again): for weights whose kernels read a packed copy instead. No effect on a heap copy or outside the
    /// mapping.
    public func release(_ region: UnsafeRawBufferPointer) { advise(region, MADV_DONTNEED) }

    private func advise(_ region: UnsafeRawBufferPointer, _ advice: Int32) {
        guard !isHeapCopy, let base, let start = region.baseAddress,
            start >= UnsafeRawPointer(base), start + region.count <= UnsafeRawPointer(base) + bytes.count
        else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (Int(bitPattern: start) + page - 1) / page * page, end = (Int(bitPattern: start) + region.count) / page * page
        guard end > first, let p = UnsafeMutableRawPointer(bitPattern: first) else { return }
        _ = madvise(p, end - first, advice)
    }

    deinit {
        guard let base else { return }
        if isHeapCopy { base.deallocate() } else { munmap(base, bytes.count) }
    }
}

/// Formats `errno` values.
enum Errno {
    static func describe(_ code: Int32) -> String {
        guard let s = strerror(code) else { return "errno \(code)" }
        return String(cString: s)
    }
}
