using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Parquet;

namespace BlockwiseLR.Data;

/// <summary>One document of a corpus: its text and where it came from (file, and line or row).</summary>
/// <param name="Source">The file it came from.</param>
/// <param name="Location">Where in the file: a line or row number.</param>
/// <param name="Text">The document's text.</param>
public sealed record Document(string Source, string Location, string Text);

/// <summary>A file the corpus reads, as recorded in a manifest.</summary>
/// <param name="Path">The file's path.</param>
/// <param name="Bytes">Its length in bytes.</param>
/// <param name="Sha256">The SHA-256 of its bytes, 64 lower-case hex digits.</param>
public sealed record SourceFile(string Path, long Bytes, string Sha256);

/// <summary>How to read sources.</summary>
public sealed record CorpusOptions
{
    /// <summary>Files taken from folders (recursively).</summary>
    public string Glob { get; init; } = "*.txt";

    /// <summary>The field that holds a document's text in .jsonl sources (one document a line); default
    /// "text".</summary>
    public string JsonField { get; init; } = "text";

    /// <summary>The column that holds a document's text in .parquet sources; default "text".</summary>
    public string ParquetColumn { get; init; } = "text";

    /// <summary>Replace invalid UTF-8 with U+FFFD instead of stopping with an error.</summary>
    public bool ReplaceInvalidUtf8 { get; init; }
}

/// <summary>
/// Reads corpora: text files (one document each), .jsonl (one document a line, from a string field) and
/// .parquet (one document a row, from a string column); a .gz suffix is decompressed and checked to its end (a .gz
/// cut short is refused). Folders are searched recursively with a glob. Every problem is a
/// <see cref="DataInputException"/> naming the file and, where it applies, the line or byte offset.
/// </summary>
public static class Corpus
{
    static readonly UTF8Encoding Strict = new(false, throwOnInvalidBytes: true);
    static readonly UTF8Encoding Replacing = new(false, throwOnInvalidBytes: false);

    /// <summary>The built-in corpora: "gutenberg" (18 cleaned Project Gutenberg books, data/gutenberg).</summary>
    public static IReadOnlyList<string> BuiltinNames { get; } = ["gutenberg"];

    /// <summary>The files named by <paramref name="inputs"/> (files as given, folders searched recursively),
    /// sorted within each folder.</summary>
    public static IReadOnlyList<SourceFile> Resolve(IEnumerable<string> inputs, CorpusOptions options)
    {
        var files = new List<string>();
        foreach (var input in inputs)
        {
            if (File.Exists(input))
                files.Add(input);
            else if (Directory.Exists(input))
            {
                var found = Directory
                    .GetFiles(input, options.Glob, SearchOption.AllDirectories)
                    .Order(StringComparer.Ordinal)
                    .ToList();
                if (found.Count == 0)
                    throw new DataInputException(
                        $"{input}: no files match '{options.Glob}' (searched recursively); set Glob",
                        "Glob"
                    );
                files.AddRange(found);
            }
            else
                throw new DataInputException($"{input}: no such file or folder");
        }
        if (files.Count == 0)
            throw new DataInputException(
                "no input: give Inputs (files or folders) or the Builtin corpus gutenberg",
                "Inputs",
                "Builtin"
            );
        RefuseRepeats(files);
        return files.Select(f => new SourceFile(f, new FileInfo(f).Length, Sha256Of(f))).ToList();
    }

    /// <summary>A file named twice (the same input given twice, by two spellings, through a link, or inside a folder
    /// also given) would be read twice, its chunks landing in both splits: refused, naming it.</summary>
    static void RefuseRepeats(IReadOnlyList<string> files)
    {
        var seen = new Dictionary<string, string>(
            OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal
        );
        foreach (var file in files)
        {
            var full = Path.GetFullPath(file);
            try
            {
                full = new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
            }
            catch (IOException) { } // a link that cannot be followed is compared by its own path
            if (!seen.TryAdd(full, file))
                throw new DataInputException(
                    $"{file}: named twice (also as {seen[full]}: both are {full}); it would be read twice and its "
                        + $"text land in both train and val: give each input once",
                    "Inputs"
                );
        }
    }

    /// <summary>The SHA-256 of <paramref name="bytes"/> as 64 lower-case hex digits.</summary>
    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>A file's SHA-256, streamed (the file is read again, one at a time, when its documents are).</summary>
    static string Sha256Of(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>The documents of one file, in order (each read whole; <c>blr prepare</c> streams them
    /// instead).</summary>
    public static IEnumerable<Document> Read(string path, CorpusOptions options) =>
        Stream(path, options).Select(d => new Document(path, d.Location, d.Text()));

    /// <summary>The documents of one file as they are read: a text file is one document read in blocks of about
    /// 1M characters, a .jsonl line or a .parquet row one block; a .gz is decompressed as it is read, and a .parquet
    /// read row group by row group (a .parquet.gz is decompressed into memory first: parquet needs to seek). A
    /// document's blocks must be consumed before the next document is asked for.</summary>
    internal static IEnumerable<StreamedDocument> Stream(string path, CorpusOptions options)
    {
        var name = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? path[..^3] : path;
        if (name.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase))
            return ParquetRows(path, options.ParquetColumn);
        if (name.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase))
            return JsonLines(path, () => Open(path), options);
        return [new StreamedDocument(path, TextBlocks(path, options))];
    }

    /// <summary>A file's bytes; a .gz decompressed and checked to its end (<see cref="CheckedGzipStream"/>).</summary>
    static System.IO.Stream Open(string path) =>
        path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)
            ? CheckedGzipStream.Open(path)
            : new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);

    const int BlockBytes = 1 << 20;

    /// <summary>The UTF-8 byte-order mark, EF BB BF (U+FEFF), that some editors write at a file's start.</summary>
    static ReadOnlySpan<byte> Utf8Bom => [0xEF, 0xBB, 0xBF];

    /// <summary>A text file's characters in blocks (each yielded block is reused by the next: copy what you keep),
    /// strictly decoded with the byte offset of the first invalid byte in the message.</summary>
    static IEnumerable<ReadOnlyMemory<char>> TextBlocks(string path, CorpusOptions options)
    {
        using var stream = Open(path);
        var decoder = (options.ReplaceInvalidUtf8 ? Replacing : Strict).GetDecoder();
        var bytes = new byte[BlockBytes];
        var chars = new char[BlockBytes + 4];
        long offset = 0;
        while (true)
        {
            var n = ReadFull(stream, bytes, path, 0);
            int produced;
            try
            {
                produced = decoder.GetChars(bytes, 0, n, chars, 0, flush: n == 0);
            }
            catch (DecoderFallbackException e)
            {
                throw new DataInputException(
                    $"{path}: invalid UTF-8 at byte offset {offset + e.Index}; fix the file or set ReplaceInvalidUtf8",
                    "ReplaceInvalidUtf8"
                );
            }
            // A byte-order mark opens the file, not its text: not tokenized.
            var from = offset == 0 && n >= 3 && bytes.AsSpan(0, 3).SequenceEqual(Utf8Bom) ? 1 : 0;
            offset += n;
            if (produced > from)
                yield return chars.AsMemory(from, produced - from);
            if (n == 0)
                yield break;
        }
    }

    /// <summary>The documents of a built-in corpus and a description of it for the manifest.</summary>
    public static (IEnumerable<Document> Documents, SourceFile Source) Builtin(string name)
    {
        if (name != "gutenberg")
            throw new DataInputException(
                $"unknown built-in corpus '{name}' (known: {string.Join(", ", BuiltinNames)})"
            );
        using var resource = typeof(Corpus).Assembly.GetManifestResourceStream("gutenberg.jsonl.gz")
            ?? throw new InvalidOperationException("the built-in corpus is missing from BlockwiseLR.dll");
        using var memory = new MemoryStream();
        resource.CopyTo(memory);
        var packed = memory.ToArray();
        const string source = "builtin:gutenberg (data/gutenberg/gutenberg.jsonl.gz)";
        var documents = JsonLines(source, () => new MemoryStream(Gunzip(packed, source)), new CorpusOptions())
            .Select(d => new Document(source, d.Location.Replace(source, "gutenberg"), d.Text()));
        return (documents.ToList(), new SourceFile(source, packed.Length, Sha256(packed)));
    }

    static byte[] Gunzip(byte[] bytes, string path)
    {
        try
        {
            using var gzip = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
            using var output = new MemoryStream();
            gzip.CopyTo(output);
            return output.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new DataInputException($"{path}: not valid gzip ({e.Message})");
        }
    }

    static string Decode(ReadOnlySpan<byte> bytes, string path, long offset, int? line, CorpusOptions options)
    {
        if (options.ReplaceInvalidUtf8)
            return Replacing.GetString(bytes);
        try
        {
            return Strict.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            var at = line is { } l ? $" line {l}," : "";
            throw new DataInputException(
                $"{path}:{at} invalid UTF-8 at byte offset {offset + e.Index}; fix the file or set ReplaceInvalidUtf8",
                "ReplaceInvalidUtf8"
            );
        }
    }

    /// <summary>One document a line (blank lines skipped), read line by line from the stream.</summary>
    static IEnumerable<StreamedDocument> JsonLines(string path, Func<System.IO.Stream> open, CorpusOptions options)
    {
        using var stream = open();
        var buffer = new byte[BlockBytes];
        int filled = 0,
            start = 0;
        long consumed = 0; // bytes before buffer[0]
        var lineNumber = 0;
        var end = false;
        while (true)
        {
            var newline = Array.IndexOf(buffer, (byte)'\n', start, filled - start);
            if (newline < 0 && !end)
            {
                // Keep the partial line, make room (growing for a line longer than the buffer) and read on.
                var partial = filled - start;
                if (partial == buffer.Length)
                    Array.Resize(ref buffer, buffer.Length * 2);
                Array.Copy(buffer, start, buffer, 0, partial);
                consumed += start;
                (start, filled) = (0, partial);
                var n = ReadFull(stream, buffer, path, filled);
                filled += n;
                end = n == 0;
                continue;
            }
            var lineEnd = newline < 0 ? filled : newline;
            if (newline < 0 && start == filled)
                yield break;
            lineNumber++;
            // A byte-order mark opens the file, not its first line.
            if (consumed + start == 0 && buffer.AsSpan(0, lineEnd).StartsWith(Utf8Bom))
                start = Utf8Bom.Length;
            var lineStart = consumed + start;
            var line = Decode(buffer.AsSpan(start, lineEnd - start), path, lineStart, lineNumber, options);
            start = newline < 0 ? filled : newline + 1;
            if (line.Trim().Length == 0)
                continue;
            yield return new StreamedDocument(
                $"{path}:{lineNumber}",
                [FieldOf(line, path, lineNumber, lineStart, options).AsMemory()]
            );
        }
    }

    /// <summary>Reads into buffer[at..] until it is full or the stream ends, turning a broken gzip into one
    /// line.</summary>
    static int ReadFull(System.IO.Stream stream, byte[] buffer, string path, int at)
    {
        var total = 0;
        try
        {
            while (at + total < buffer.Length)
            {
                var n = stream.Read(buffer, at + total, buffer.Length - at - total);
                if (n == 0)
                    break;
                total += n;
            }
        }
        catch (InvalidDataException e)
        {
            throw new DataInputException($"{path}: not valid gzip ({e.Message})");
        }
        return total;
    }

    static string FieldOf(string line, string path, int lineNumber, long lineStart, CorpusOptions options)
    {
        try
        {
            using var json = JsonDocument.Parse(line);
            if (
                json.RootElement.ValueKind != JsonValueKind.Object
                || !json.RootElement.TryGetProperty(options.JsonField, out var field)
                || field.ValueKind != JsonValueKind.String
            )
                throw new DataInputException(
                    $"{path}: line {lineNumber} (byte offset {lineStart}) has no string field '{options.JsonField}'; "
                        + $"set JsonField",
                    "JsonField"
                );
            return field.GetString()!;
        }
        catch (JsonException e)
        {
            throw new DataInputException(
                $"{path}: line {lineNumber} (byte offset {lineStart}) is not JSON: {e.Message.Split('\n')[0]}"
            );
        }
    }

    /// <summary>One document a row, read one row group at a time.</summary>
    static IEnumerable<StreamedDocument> ParquetRows(string path, string column)
    {
        System.IO.Stream stream;
        if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
        {
            var memory = new MemoryStream();
            using (var gz = Open(path))
                try
                {
                    gz.CopyTo(memory);
                }
                catch (InvalidDataException e)
                {
                    throw new DataInputException($"{path}: not valid gzip ({e.Message})");
                }
            memory.Position = 0;
            stream = memory;
        }
        else
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        using var owned = stream;
        ParquetReader reader;
        Parquet.Schema.DataField field;
        try
        {
            reader = ParquetReader.CreateAsync(stream, null, false, default).GetAwaiter().GetResult();
            var fields = reader.Schema.GetDataFields();
            field = fields.FirstOrDefault(f => f.Name == column)
                ?? throw new DataInputException(
                    $"{path}: no column '{column}' (columns: {string.Join(", ", fields.Select(f => f.Name))}); set "
                        + $"ParquetColumn",
                    "ParquetColumn"
                );
            if (field.ClrType != typeof(string) && field.ClrType != typeof(ReadOnlyMemory<char>))
                throw new DataInputException($"{path}: column '{column}' holds {field.ClrType.Name}, not text");
        }
        catch (Exception e) when (NotParquet(e))
        {
            throw new DataInputException($"{path}: not a readable parquet file ({e.Message.Split('\n')[0]})");
        }
        try
        {
            long row = 0;
            for (var group = 0; group < reader.RowGroupCount; group++)
            {
                string?[] values;
                try
                {
                    using var groupReader = reader.OpenRowGroupReader(group);
                    values = new string?[groupReader.RowCount];
                    groupReader.ReadAsync(field, values.AsMemory(), null, default).AsTask().GetAwaiter().GetResult();
                }
                catch (Exception e) when (NotParquet(e))
                {
                    throw new DataInputException($"{path}: not a readable parquet file ({e.Message.Split('\n')[0]})");
                }
                foreach (var text in values)
                {
                    row++;
                    if (text is null)
                        throw new DataInputException($"{path}: row {row} of column '{column}' is null, not text");
                    yield return new StreamedDocument($"{path}#row{row}", [text.AsMemory()]);
                }
            }
        }
        finally
        {
            reader.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    static bool NotParquet(Exception e) =>
        e
            is not DataInputException
                and (
                    IOException
                    or InvalidDataException
                    or NotSupportedException
                    or ArgumentException
                    or InvalidOperationException
                );
}

/// <summary>A document being read: where it is, and its text in blocks (see <see cref="Corpus.Stream"/>).</summary>
sealed record StreamedDocument(string Location, IEnumerable<ReadOnlyMemory<char>> Blocks)
{
    public string Text()
    {
        var text = new StringBuilder();
        foreach (var block in Blocks)
            text.Append(block.Span);
        return text.ToString();
    }
}
