using System.IO.Compression;

namespace BlockwiseLR.Data;

/// <summary>
/// A .gz file decompressed and checked to its end. .NET's <see cref="GZipStream"/> checks each member's CRC-32 when
/// the member ends, but a file cut short ends the stream without a word (half a file reads as a whole one). So this
/// stream keeps the CRC-32 and length of what it decompressed and, when the decompressor says the stream is over,
/// checks them against the file's last 8 bytes, the gzip trailer (CRC-32 and length mod 2^32) of its last member. A
/// file of several members (<c>cat a.gz b.gz</c>, pigz, bgzip), which GZipStream reads through, has a trailer of its
/// last member only: when the whole output does not match it, the output from where that member starts (the trailer's
/// length from the end) is decompressed again and checked. A file cut short fails both (its last 8 bytes are
/// compressed data, not a trailer), and is a <see cref="DataInputException"/> naming the file.
/// </summary>
sealed class CheckedGzipStream : Stream
{
    readonly string path;
    readonly GZipStream inner;
    readonly uint trailerCrc;
    readonly uint trailerLength;
    uint crc = Crc32.Initial;
    long produced;
    bool checkedEnd;

    CheckedGzipStream(string path, FileStream file, uint trailerCrc, uint trailerLength)
    {
        (this.path, this.trailerCrc, this.trailerLength) = (path, trailerCrc, trailerLength);
        inner = new GZipStream(file, CompressionMode.Decompress);
    }

    /// <summary>Opens a .gz file, reading its trailer first.</summary>
    public static Stream Open(string path)
    {
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        try
        {
            // The smallest gzip member: a 10-byte header, an empty deflate block (2 bytes), an 8-byte trailer.
            if (file.Length < 20)
                throw Damaged(path, $"{file.Length} bytes is shorter than any gzip file");
            Span<byte> trailer = stackalloc byte[8];
            file.Seek(-8, SeekOrigin.End);
            file.ReadExactly(trailer);
            file.Seek(0, SeekOrigin.Begin);
            return new CheckedGzipStream(
                path,
                file,
                System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(trailer),
                System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(trailer[4..])
            );
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    static DataInputException Damaged(string path, string what) =>
        new($"{path}: not a whole gzip file ({what}); it was cut short or damaged: copy or download it again");

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n;
        try
        {
            n = inner.Read(buffer);
        }
        catch (InvalidDataException e)
        {
            throw new DataInputException($"{path}: not valid gzip ({e.Message})");
        }
        if (n > 0)
        {
            crc = Crc32.Update(crc, buffer[..n]);
            produced += n;
        }
        else if (buffer.Length > 0 && !checkedEnd)
        {
            checkedEnd = true;
            CheckEnd();
        }
        return n;
    }

    void CheckEnd()
    {
        if (Crc32.Final(crc) == trailerCrc && (uint)produced == trailerLength)
            return;
        // Several members: the last one's output is the last trailerLength (mod 2^32) bytes.
        for (var start = produced - trailerLength; start > 0; start -= 1L << 32)
            if (TailCrc(start) == trailerCrc)
                return;
        throw Damaged(path, $"the {produced:N0} bytes it decompresses to do not match its trailer's CRC-32 and length");
    }

    /// <summary>The CRC-32 of the decompressed bytes from <paramref name="start"/> on (a second pass).</summary>
    uint TailCrc(long start)
    {
        using var again = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        var buffer = new byte[1 << 20];
        long at = 0;
        var tail = Crc32.Initial;
        int n;
        while ((n = again.Read(buffer)) > 0)
        {
            var skip = (int)Math.Clamp(start - at, 0, n);
            tail = Crc32.Update(tail, buffer.AsSpan(skip, n - skip));
            at += n;
        }
        return Crc32.Final(tail);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position
    {
        get => produced;
        set => throw new NotSupportedException();
    }

    public override void Flush() { }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            inner.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320: gzip's and zlib's), slicing by 8.</summary>
static class Crc32
{
    public const uint Initial = 0xFFFFFFFF;

    static readonly uint[] Table = MakeTable();

    static uint[] MakeTable()
    {
        var table = new uint[8 * 256];
        for (uint i = 0; i < 256; i++)
        {
            var c = i;
            for (var k = 0; k < 8; k++)
                c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        for (var i = 0; i < 256; i++)
        for (var s = 1; s < 8; s++)
            table[s * 256 + i] = (table[(s - 1) * 256 + i] >> 8) ^ table[table[(s - 1) * 256 + i] & 0xFF];
        return table;
    }

    public static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        var t = Table;
        var i = 0;
        for (; i + 8 <= data.Length; i += 8)
        {
            var one = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(data[i..]) ^ crc;
            var two = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(data[(i + 4)..]);
            crc =
                t[7 * 256 + (one & 0xFF)]
                ^ t[6 * 256 + ((one >> 8) & 0xFF)]
                ^ t[5 * 256 + ((one >> 16) & 0xFF)]
                ^ t[4 * 256 + (one >> 24)]
                ^ t[3 * 256 + (two & 0xFF)]
                ^ t[2 * 256 + ((two >> 8) & 0xFF)]
                ^ t[1 * 256 + ((two >> 16) & 0xFF)]
                ^ t[two >> 24];
        }
        for (; i < data.Length; i++)
            crc = t[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    public static uint Final(uint crc) => ~crc;

    /// <summary>The CRC-32 of <paramref name="data"/>.</summary>
    public static uint Of(ReadOnlySpan<byte> data) => Final(Update(Initial, data));
}
