using BlockwiseLR.Core;
using static TorchSharp.torch;

namespace BlockwiseLR.Data;

/// <summary>The shards of one split of a prepared dataset: llm.c shards (train_*.bin, val_*.bin and other
/// *train*.bin / *val*.bin names with a header) or raw nanoGPT files (exactly train.bin / val.bin).</summary>
public sealed class TokenDataset : ITokenSource, IDisposable
{
    TokenDataset(string directory, string split, IReadOnlyList<TokenShard> shards)
    {
        Directory = directory;
        Split = split;
        Shards = shards;
    }

    /// <summary>The prepared dataset's folder.</summary>
    public string Directory { get; }

    /// <summary>The split: "train" or "val".</summary>
    public string Split { get; }

    /// <summary>The split's shards.</summary>
    public IReadOnlyList<TokenShard> Shards { get; }

    /// <summary>Tokens in all shards of the split.</summary>
    public long Tokens => Shards.Sum(s => s.Count);

    string ITokenSource.Name => $"{Directory} ({Split})";
    IReadOnlyList<long> ITokenSource.SegmentLengths => Shards.Select(s => s.Count).ToList();

    void ITokenSource.CopyTo(int segment, long start, Span<long> destination) =>
        Shards[segment].CopyTo(start, destination);

    /// <summary>Opens the "train" or "val" shards of <paramref name="directory"/>; with <paramref name="vocabSize"/>
    /// every token is checked to be below it.</summary>
    public static TokenDataset Open(string directory, string split, int? vocabSize = null)
    {
        if (!System.IO.Directory.Exists(directory))
            throw new DataInputException($"{directory}: no such folder; run blr prepare first");
        var raw = Path.Combine(directory, $"{split}.bin");
        var shards = File.Exists(raw)
            ? [TokenShard.OpenRaw(raw)]
            : System
                .IO.Directory.GetFiles(directory, $"*{split}*.bin")
                .Order(StringComparer.Ordinal)
                .Select(TokenShard.Open)
                .ToList();
        if (shards.Count == 0)
            throw new DataInputException(
                $"{directory}: no {split} shards ({split}_*.bin or {split}.bin); prepare a dataset into it first "
                    + $"(ShardPreparer.Run or blr prepare)"
            );
        if (vocabSize is { } vocab)
            foreach (var shard in shards)
                shard.CheckVocabulary(vocab);
        CheckManifest(directory, split, shards);
        return new TokenDataset(directory, split, shards);
    }

    /// <summary>A manifest.json (blr prepare writes one) must be valid and list exactly these shards with their
    /// token counts; a folder without one (raw nanoGPT or llm.c files) is read as it is.</summary>
    static void CheckManifest(string directory, string split, IReadOnlyList<TokenShard> shards)
    {
        var path = Path.Combine(directory, "manifest.json");
        if (!File.Exists(path))
            return;
        System.Text.Json.Nodes.JsonNode? root;
        try
        {
            root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path));
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new DataInputException($"{path}: not valid JSON (line {e.LineNumber + 1}); prepare the data again");
        }
        var listed =
            (root as System.Text.Json.Nodes.JsonObject)?["shards"]?[split] as System.Text.Json.Nodes.JsonArray
            ?? throw new DataInputException($"{path}: no shards.{split} list; prepare the data again");
        var expected = new List<(string File, long Tokens)>();
        foreach (var entry in listed)
        {
            if (
                entry?["file"] is System.Text.Json.Nodes.JsonValue f
                && f.TryGetValue<string>(out var file)
                && entry["tokens"] is System.Text.Json.Nodes.JsonValue t
                && t.TryGetValue<long>(out var tokens)
            )
                expected.Add((file, tokens));
            else
                throw new DataInputException(
                    $"{path}: an entry of shards.{split} is not {{\"file\": ..., \"tokens\": ...}}; prepare the data "
                        + $"again"
                );
        }
        var actual = shards.Select(s => (Path.GetFileName(s.Path), s.Count)).ToList();
        if (!expected.SequenceEqual(actual))
            throw new DataInputException(
                $"{path}: lists {split} shards {string.Join(", ", expected.Select(e => $"{e.File} ({e.Tokens})"))} "
                    + $"but the folder holds {string.Join(", ", actual.Select(a => $"{a.Item1} ({a.Item2})"))}; "
                    + "prepare the data again"
            );
    }

    /// <summary>Closes the memory maps of every shard.</summary>
    public void Dispose()
    {
        foreach (var shard in Shards)
            shard.Dispose();
    }
}
