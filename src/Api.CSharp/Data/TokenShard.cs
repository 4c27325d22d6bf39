using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;

namespace BlockwiseLR.Data;

/// <summary>
/// Token shards in the llm.c / modded-nanogpt format: a header of 256 little-endian int32 (header[0] magic
/// 20240520 with header[1] version 1 for uint16 tokens, or magic 20240801 with version 7 for uint32; header[2]
/// the number of tokens), then the tokens, little-endian. Also raw nanoGPT .bin files (bare uint16, no header).
/// Read through a memory map, never loaded whole.
/// </summary>
public sealed unsafe class TokenShard : IDisposable
{
    /// <summary>The header's length in int32 values (256).</summary>
    public const int HeaderInts = 256;

    /// <summary>The header's length in bytes (1,024).</summary>
    public const int HeaderBytes = HeaderInts * 4;

    /// <summary>header[0] and header[1] of a shard of uint16 tokens.</summary>
    public const int MagicUInt16 = 20240520,
        VersionUInt16 = 1;

    /// <summary>header[0] and header[1] of a shard of uint32 tokens.</summary>
    public const int MagicUInt32 = 20240801,
        VersionUInt32 = 7;

    readonly MemoryMappedFile map;
    readonly MemoryMappedViewAccessor view;
    readonly byte* data;

    TokenShard(string path, long dataOffset, long count, int bytesPerToken)
    {
        Path = path;
        Count = count;
        BytesPerToken = bytesPerToken;
        if (count == 0)
        {
            map = null!;
            view = null!;
            return;
        }
        map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        data = pointer + view.PointerOffset + dataOffset;
    }

    /// <summary>The shard's file.</summary>
    public string Path { get; }

    /// <summary>Tokens in the shard.</summary>
    public long Count { get; }

    /// <summary>2 (uint16) or 4 (uint32).</summary>
    public int BytesPerToken { get; }

    /// <summary>Opens an llm.c shard; a wrong magic or version, or a header count larger than the bytes that
    /// follow, is a <see cref="DataInputException"/>.</summary>
    public static TokenShard Open(string path)
    {
        if (!File.Exists(path))
            throw new DataInputException($"{path}: no such shard");
        var length = new FileInfo(path).Length;
        if (length < HeaderBytes)
            throw new DataInputException(
                $"{path}: {length} bytes is shorter than the {HeaderBytes}-byte llm.c header; is it a raw nanoGPT "
                    + $".bin (name it train.bin / val.bin)?"
            );
        Span<byte> header = stackalloc byte[12];
        using (var stream = File.OpenRead(path))
            stream.ReadExactly(header);
        var magic = BinaryPrimitives.ReadInt32LittleEndian(header);
        var version = BinaryPrimitives.ReadInt32LittleEndian(header[4..]);
        var count = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
        var bytesPerToken = (magic, version) switch
        {
            (MagicUInt16, VersionUInt16) => 2,
            (MagicUInt32, VersionUInt32) => 4,
            (MagicUInt16 or MagicUInt32, _) => throw new DataInputException(
                $"{path}: header version {version} at byte 4 does not go with magic {magic} (expected "
                    + $"{(magic == MagicUInt16 ? VersionUInt16 : VersionUInt32)})"
            ),
            _ => throw new DataInputException(
                $"{path}: magic {magic} at byte 0 is not an llm.c shard ({MagicUInt16} for uint16 or {MagicUInt32} "
                    + $"for uint32 tokens); for a raw nanoGPT file name it train.bin / val.bin"
            ),
        };
        if (count < 0 || HeaderBytes + (long)count * bytesPerToken > length)
            throw new DataInputException(
                $"{path}: truncated: the header (byte 8) says {count} tokens but only "
                    + $"{(length - HeaderBytes) / bytesPerToken} follow; prepare the data again"
            );
        if (HeaderBytes + (long)count * bytesPerToken < length)
            throw new DataInputException(
                $"{path}: the header (byte 8) says {count} tokens but {(length - HeaderBytes) / bytesPerToken} "
                    + $"follow; the header and the payload disagree, prepare the data again"
            );
        return new TokenShard(path, HeaderBytes, count, bytesPerToken);
    }

    /// <summary>Opens a raw nanoGPT file: bare little-endian uint16 tokens.</summary>
    public static TokenShard OpenRaw(string path)
    {
        if (!File.Exists(path))
            throw new DataInputException($"{path}: no such file");
        var length = new FileInfo(path).Length;
        if (length % 2 != 0)
            throw new DataInputException($"{path}: {length} bytes is not a whole number of uint16 tokens");
        return new TokenShard(path, 0, length / 2, 2);
    }

    /// <summary>Token at <paramref name="index"/>.</summary>
    public int this[long index] => BytesPerToken == 2 ? ((ushort*)data)[index] : (int)((uint*)data)[index];

    /// <summary>Copies tokens [start, start + destination.Length) into <paramref name="destination"/>.</summary>
    public void CopyTo(long start, Span<long> destination)
    {
        if (start < 0 || start + destination.Length > Count)
            throw new ArgumentOutOfRangeException(
                nameof(start),
                $"{Path}: tokens {start}..{start + destination.Length} are outside 0..{Count}"
            );
        if (BytesPerToken == 2)
        {
            var source = new ReadOnlySpan<ushort>((ushort*)data + start, destination.Length);
            for (var i = 0; i < source.Length; i++)
                destination[i] = source[i];
        }
        else
        {
            var source = new ReadOnlySpan<uint>((uint*)data + start, destination.Length);
            for (var i = 0; i < source.Length; i++)
                destination[i] = source[i];
        }
    }

    /// <summary>Every token must be below the vocabulary size; the first that is not is reported with its
    /// index.</summary>
    public void CheckVocabulary(int vocabSize)
    {
        for (long i = 0; i < Count; i++)
            if (this[i] >= vocabSize)
                throw new DataInputException(
                    $"{Path}: token {i} is {this[i]}, at or above the vocabulary size {vocabSize}; was the shard "
                        + $"made with another tokenizer?"
                );
    }

    /// <summary>Closes the memory map.</summary>
    public void Dispose()
    {
        if (view is null)
            return;
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
        map.Dispose();
    }

    /// <summary>The exact llm.c header for <paramref name="count"/> tokens of the given width.</summary>
    public static byte[] Header(long count, int bytesPerToken)
    {
        if (count > int.MaxValue)
            throw new ArgumentOutOfRangeException(
                nameof(count),
                $"{count} tokens do not fit an llm.c header's int32 count; use smaller shards"
            );
        var header = new byte[HeaderBytes];
        BinaryPrimitives.WriteInt32LittleEndian(header, bytesPerToken == 2 ? MagicUInt16 : MagicUInt32);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(4), bytesPerToken == 2 ? VersionUInt16 : VersionUInt32);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), (int)count);
        return header;
    }
}

/// <summary>Writes one llm.c shard sequentially; the header's count is filled in by <see cref="Dispose"/>.</summary>
public sealed class TokenShardWriter : IDisposable
{
    readonly FileStream stream;
    readonly byte[] buffer = new byte[1 << 16];
    int buffered;

    /// <summary>Creates <paramref name="path"/> (an existing file is an <see cref="IOException"/>) for tokens below
    /// <paramref name="vocabSize"/>: uint16 when it is at most 65,536, else uint32.</summary>
    public TokenShardWriter(string path, int vocabSize)
    {
        Path = path;
        BytesPerToken = vocabSize <= 65536 ? 2 : 4;
        stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        stream.Write(TokenShard.Header(0, BytesPerToken));
    }

    TokenShardWriter(string path, int vocabSize, long count)
    {
        Path = path;
        BytesPerToken = vocabSize <= 65536 ? 2 : 4;
        stream = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.None, 1 << 16);
        var length = TokenShard.HeaderBytes + count * BytesPerToken;
        if (stream.Length < length)
            throw new InvalidDataException(
                $"{path}: holds {(stream.Length - TokenShard.HeaderBytes) / BytesPerToken} tokens, fewer than the "
                    + $"{count} recorded; start again (Restart)"
            );
        stream.SetLength(length);
        stream.Position = length;
        Count = count;
    }

    /// <summary>Reopens a shard being written by an interrupted job at the <paramref name="count"/> tokens it had
    /// made durable (<see cref="Sync"/>), dropping whatever was written after; the header is rewritten on
    /// Dispose.</summary>
    public static TokenShardWriter Resume(string path, int vocabSize, long count) => new(path, vocabSize, count);

    /// <summary>Makes the tokens written so far durable (on disk, not only in buffers); the header's count stays
    /// as it is until Dispose.</summary>
    public void Sync()
    {
        Flush();
        stream.Flush(flushToDisk: true);
    }

    /// <summary>The shard's file.</summary>
    public string Path { get; }

    /// <summary>2 (uint16) or 4 (uint32).</summary>
    public int BytesPerToken { get; }

    /// <summary>Tokens written so far.</summary>
    public long Count { get; private set; }

    /// <summary>Appends <paramref name="tokens"/> (buffered).</summary>
    public void Write(ReadOnlySpan<int> tokens)
    {
        foreach (var token in tokens)
        {
            if (buffered + BytesPerToken > buffer.Length)
                Flush();
            if (BytesPerToken == 2)
                BinaryPrimitives.WriteUInt16LittleEndian(buffer.AsSpan(buffered), (ushort)token);
            else
                BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(buffered), (uint)token);
            buffered += BytesPerToken;
        }
        Count += tokens.Length;
    }

    void Flush()
    {
        stream.Write(buffer, 0, buffered);
        buffered = 0;
    }

    /// <summary>Writes what is buffered, fills in the header's token count and closes the file.</summary>
    public void Dispose()
    {
        Flush();
        stream.Position = 0;
        stream.Write(TokenShard.Header(Count, BytesPerToken));
        stream.Flush(flushToDisk: true);
        stream.Dispose();
    }
}
