using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Parquet;

namespace BlockwiseLR.Data;

/// <summary>One document of a corpus: its text and where it came from (file, and line or row).</summary>
public sealed record Document(string Source, string Location, string Text);

/// <summary>A file the corpus reads, as recorded in a manifest.</summary>
public sealed record SourceFile(string Path, long Bytes, string Sha256);

/// <summary>How to read sources.</summary>
public sealed record CorpusOptions
{
    /// <summary>Files taken from folders (recursively).</summary>
    public string Glob { get; init; } = "*.txt";
    public string JsonField { get; init; } = "text";
    public string ParquetColumn { get; init; } = "text";
    /// <summary>Replace invalid UTF-8 with U+FFFD instead of stopping with an error.</summary>
    public bool ReplaceInvalidUtf8 { get; init; }
}

/// <summary>
/// Reads corpora: text files (one document each), .jsonl (one document a line, from a string field) and
/// .parquet (one document a row, from a string column); a .gz suffix is decompressed. Folders are searched
/// recursively with a glob. Every problem is a <see cref="DataInputException"/> naming the file and, where it
/// applies, the line or byte offset.
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
            if (File.Exists(input)) files.Add(input);
            else if (Directory.Exists(input))
            {
                var found = Directory.GetFiles(input, options.Glob, SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
                if (found.Count == 0) throw new DataInputException($"{input}: no files match '{options.Glob}' (searched recursively); set Glob", "Glob");
                files.AddRange(found);
            }
            else throw new DataInputException($"{input}: no such file or folder");
        }
        if (files.Count == 0) throw new DataInputException("no input: give Inputs (files or folders) or the Builtin corpus gutenberg", "Inputs", "Builtin");
        return files.Select(f => new SourceFile(f, new FileInfo(f).Length, Sha256Of(f))).ToList();
    }

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>A file's SHA-256, streamed (the file is read again, one at a time, when its documents are).</summary>
    static string Sha256Of(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    /// <summary>The documents of one file, in order.</summary>
    public static IEnumerable<Document> Read(string path, CorpusOptions options)
    {
        var bytes = File.ReadAllBytes(path);
        var name = path;
        if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
        {
            bytes = Gunzip(bytes, path);
            name = path[..^3];
        }
        if (name.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)) return JsonLines(path, bytes, options);
        if (name.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase)) return ParquetRows(path, bytes, options.ParquetColumn);
        return [new Document(path, path, Decode(bytes, path, 0, null, options))];
    }

    /// <summary>The documents of a built-in corpus and a description of it for the manifest.</summary>
    public static (IEnumerable<Document> Documents, SourceFile Source) Builtin(string name)
    {
        if (name != "gutenberg") throw new DataInputException($"unknown built-in corpus '{name}' (known: {string.Join(", ", BuiltinNames)})");
        using var resource = typeof(Corpus).Assembly.GetManifestResourceStream("gutenberg.jsonl.gz")
            ?? throw new InvalidOperationException("the built-in corpus is missing from BlockwiseLR.dll");
        using var memory = new MemoryStream();
        resource.CopyTo(memory);
        var packed = memory.ToArray();
        const string source = "builtin:gutenberg (data/gutenberg/gutenberg.jsonl.gz)";
        var documents = JsonLines(source, Gunzip(packed, source), new CorpusOptions())
            .Select(d => d with { Location = d.Location.Replace(source, "gutenberg") });
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
        catch (InvalidDataException e) { throw new DataInputException($"{path}: not valid gzip ({e.Message})"); }
    }

    static string Decode(byte[] bytes, string path, int offset, int? line, CorpusOptions options) =>
        Decode(bytes.AsSpan(), path, offset, line, options);

    static string Decode(ReadOnlySpan<byte> bytes, string path, int offset, int? line, CorpusOptions options)
    {
        if (options.ReplaceInvalidUtf8) return Replacing.GetString(bytes);
        try { return Strict.GetString(bytes); }
        catch (DecoderFallbackException e)
        {
            var at = line is { } l ? $" line {l}," : "";
            throw new DataInputException($"{path}:{at} invalid UTF-8 at byte offset {offset + e.Index}; fix the file or set ReplaceInvalidUtf8", "ReplaceInvalidUtf8");
        }
    }

    static IEnumerable<Document> JsonLines(string path, byte[] bytes, CorpusOptions options)
    {
        var lineNumber = 0;
        var start = 0;
        while (start < bytes.Length)
        {
            lineNumber++;
            var end = Array.IndexOf(bytes, (byte)'\n', start);
            if (end < 0) end = bytes.Length;
            var line = Decode(bytes.AsSpan(start, end - start), path, start, lineNumber, options);
            var lineStart = start;
            start = end + 1;
            if (line.Trim().Length == 0) continue;
            string text;
            try
            {
                using var json = JsonDocument.Parse(line);
                if (json.RootElement.ValueKind != JsonValueKind.Object
                    || !json.RootElement.TryGetProperty(options.JsonField, out var field) || field.ValueKind != JsonValueKind.String)
                    throw new DataInputException($"{path}: line {lineNumber} (byte offset {lineStart}) has no string field '{options.JsonField}'; set JsonField", "JsonField");
                text = field.GetString()!;
            }
            catch (JsonException e)
            {
                throw new DataInputException($"{path}: line {lineNumber} (byte offset {lineStart}) is not JSON: {e.Message.Split('\n')[0]}");
            }
            yield return new Document(path, $"{path}:{lineNumber}", text);
        }
    }

    static IEnumerable<Document> ParquetRows(string path, byte[] bytes, string column)
    {
        List<Document> documents = [];
        try
        {
            var reader = ParquetReader.CreateAsync(new MemoryStream(bytes), null, false, default).GetAwaiter().GetResult();
            try
            {
                var fields = reader.Schema.GetDataFields();
                var field = fields.FirstOrDefault(f => f.Name == column)
                    ?? throw new DataInputException($"{path}: no column '{column}' (columns: {string.Join(", ", fields.Select(f => f.Name))}); set ParquetColumn", "ParquetColumn");
                if (field.ClrType != typeof(string) && field.ClrType != typeof(ReadOnlyMemory<char>))
                    throw new DataInputException($"{path}: column '{column}' holds {field.ClrType.Name}, not text");
                long row = 0;
                for (var group = 0; group < reader.RowGroupCount; group++)
                {
                    using var groupReader = reader.OpenRowGroupReader(group);
                    var values = new string?[groupReader.RowCount];
                    groupReader.ReadAsync(field, values.AsMemory(), null, default).AsTask().GetAwaiter().GetResult();
                    foreach (var text in values)
                    {
                        row++;
                        if (text is null) throw new DataInputException($"{path}: row {row} of column '{column}' is null, not text");
                        documents.Add(new Document(path, $"{path}#row{row}", text));
                    }
                }
            }
            finally { reader.DisposeAsync().AsTask().GetAwaiter().GetResult(); }
        }
        catch (Exception e) when (e is not DataInputException and (IOException or InvalidDataException or NotSupportedException or ArgumentException or InvalidOperationException))
        {
            throw new DataInputException($"{path}: not a readable parquet file ({e.Message.Split('\n')[0]})");
        }
        return documents;
    }
}

/// <summary>
/// Cuts text where GPT-2's pre-tokenizer cannot notice: at the start of a whitespace run that follows a
/// non-whitespace character. No pre-token (letters, digits, punctuation, contractions) includes trailing
/// whitespace, and every whitespace pre-token starts inside a run, so tokenizing the pieces gives exactly the
/// tokens of the whole text (tested on the built-in corpus). Paragraph breaks (a blank line) are preferred.
/// </summary>
public static class TextPieces
{
    /// <summary>Start offsets of pieces of about <paramref name="targetChars"/> characters (the first is 0).</summary>
    public static List<int> Starts(string text, int targetChars)
    {
        var starts = new List<int> { 0 };
        var position = targetChars;
        while (position < text.Length)
        {
            var cut = ParagraphCut(text, position, position + targetChars) ?? WhitespaceCut(text, position);
            if (cut is not { } at || at >= text.Length) break;
            starts.Add(at);
            position = at + targetChars;
        }
        return starts;
    }

    static int RunStart(string text, int index)
    {
        while (index > 0 && char.IsWhiteSpace(text[index - 1])) index--;
        return index;
    }

    static int? ParagraphCut(string text, int from, int limit)
    {
        var blank = text.IndexOf("\n\n", from, StringComparison.Ordinal);
        if (blank < 0 || blank > limit) return null;
        var start = RunStart(text, blank);
        return start > from - 1 && start > 0 ? start : null;
    }

    static int? WhitespaceCut(string text, int from)
    {
        for (var i = Math.Max(1, from); i < text.Length; i++)
            if (char.IsWhiteSpace(text[i]) && !char.IsWhiteSpace(text[i - 1])) return i;
        return null;
    }
}
