using BlockwiseLR.Core;
using Microsoft.FSharp.Collections;
using TorchSharp;
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

    public string Directory { get; }
    public string Split { get; }
    public IReadOnlyList<TokenShard> Shards { get; }
    public long Tokens => Shards.Sum(s => s.Count);

    string ITokenSource.Name => $"{Directory} ({Split})";
    IReadOnlyList<long> ITokenSource.SegmentLengths => Shards.Select(s => s.Count).ToList();
    void ITokenSource.CopyTo(int segment, long start, Span<long> destination) => Shards[segment].CopyTo(start, destination);

    /// <summary>Opens the "train" or "val" shards of <paramref name="directory"/>; with <paramref name="vocabSize"/>
    /// every token is checked to be below it.</summary>
    public static TokenDataset Open(string directory, string split, int? vocabSize = null)
    {
        if (!System.IO.Directory.Exists(directory)) throw new DataInputException($"{directory}: no such folder; run blr prepare first");
        var raw = Path.Combine(directory, $"{split}.bin");
        var shards = File.Exists(raw)
            ? [TokenShard.OpenRaw(raw)]
            : System.IO.Directory.GetFiles(directory, $"*{split}*.bin").Order(StringComparer.Ordinal).Select(TokenShard.Open).ToList();
        if (shards.Count == 0) throw new DataInputException($"{directory}: no {split} shards ({split}_*.bin or {split}.bin); prepare a dataset into it first (ShardPreparer.Run or blr prepare)");
        if (vocabSize is { } vocab) foreach (var shard in shards) shard.CheckVocabulary(vocab);
        CheckManifest(directory, split, shards);
        return new TokenDataset(directory, split, shards);
    }

    /// <summary>A manifest.json (blr prepare writes one) must be valid and list exactly these shards with their
    /// token counts; a folder without one (raw nanoGPT or llm.c files) is read as it is.</summary>
    static void CheckManifest(string directory, string split, IReadOnlyList<TokenShard> shards)
    {
        var path = Path.Combine(directory, "manifest.json");
        if (!File.Exists(path)) return;
        System.Text.Json.Nodes.JsonNode? root;
        try { root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException e) { throw new DataInputException($"{path}: not valid JSON (line {e.LineNumber + 1}); prepare the data again"); }
        var listed = (root as System.Text.Json.Nodes.JsonObject)?["shards"]?[split] as System.Text.Json.Nodes.JsonArray
            ?? throw new DataInputException($"{path}: no shards.{split} list; prepare the data again");
        var expected = new List<(string File, long Tokens)>();
        foreach (var entry in listed)
        {
            if (entry?["file"] is System.Text.Json.Nodes.JsonValue f && f.TryGetValue<string>(out var file)
                && entry["tokens"] is System.Text.Json.Nodes.JsonValue t && t.TryGetValue<long>(out var tokens))
                expected.Add((file, tokens));
            else throw new DataInputException($"{path}: an entry of shards.{split} is not {{\"file\": ..., \"tokens\": ...}}; prepare the data again");
        }
        var actual = shards.Select(s => (Path.GetFileName(s.Path), s.Count)).ToList();
        if (!expected.SequenceEqual(actual))
            throw new DataInputException(
                $"{path}: lists {split} shards {string.Join(", ", expected.Select(e => $"{e.File} ({e.Tokens})"))} but the folder holds {string.Join(", ", actual.Select(a => $"{a.Item1} ({a.Item2})"))}; prepare the data again");
    }

    public void Dispose()
    {
        foreach (var shard in Shards) shard.Dispose();
    }
}

/// <summary>
/// Training batches: windows of seq_len + 1 tokens at multiples of seq_len within one shard, drawn without
/// replacement in an epoch permutation seeded by (seed, epoch) over all shards. <see cref="Position"/> (epoch,
/// index) goes into checkpoints; a sampler started at a saved position yields exactly the batches that followed.
/// </summary>
public sealed class BatchSampler
{
    readonly ITokenSource data;
    readonly WindowLayout layout;
    readonly ulong seed;
    (int Epoch, long[] Order)? cached;

    public BatchSampler(ITokenSource data, int seqLen, ulong seed, SamplerPosition? start = null)
    {
        this.data = data;
        this.seed = seed;
        layout = Windows.Layout(data, seqLen);
        Position = start ?? new SamplerPosition(0, 0);
    }

    public int SeqLen => layout.SeqLen;
    public long WindowsPerEpoch => layout.Total;
    public SamplerPosition Position { get; private set; }

    long[] Order(int epoch)
    {
        if (cached is not { } c || c.Epoch != epoch) cached = (epoch, Sampling.permutation(seed, epoch, layout.Total));
        return cached.Value.Order;
    }

    /// <summary>The next window indices, advancing the position.</summary>
    public long[] NextWindows(int batchSize)
    {
        var (windows, next) = Sampling.take(Microsoft.FSharp.Core.FuncConvert.FromFunc<int, long[]>(Order), layout.Total, Position, batchSize);
        Position = next;
        return windows;
    }

    /// <summary>Inputs and targets, (B, T) int64 each: targets are the inputs shifted by one token.</summary>
    public (Tensor Inputs, Tensor Targets) Next(int batchSize, Device? device = null) => Batch(NextWindows(batchSize), device);

    /// <summary>Inputs and targets of the given windows (a share of <see cref="NextWindows"/>).</summary>
    public (Tensor Inputs, Tensor Targets) Batch(long[] windows, Device? device = null) => Windows.Assemble(data, layout, windows, device);
}

/// <summary>Turns window indices into (inputs, targets) tensors.</summary>
public static class Windows
{
    internal static WindowLayout Layout(ITokenSource data, int seqLen)
    {
        var result = Sampling.layout(seqLen, ListModule.OfSeq(data.SegmentLengths));
        return result.IsOk ? result.ResultValue : throw new DataInputException($"{data.Name}: {result.ErrorValue}", "SeqLen");
    }

    internal static (Tensor Inputs, Tensor Targets) Assemble(ITokenSource data, WindowLayout layout, long[] windows, Device? device)
    {
        var length = layout.SeqLen + 1;
        var tokens = new long[windows.Length * length];
        for (var b = 0; b < windows.Length; b++)
        {
            var (shard, start) = Sampling.locate(layout, windows[b]);
            data.CopyTo(shard, start, tokens.AsSpan(b * length, length));
        }
        var all = tensor(tokens, [windows.Length, length]);
        var inputs = all[.., ..^1];
        var targets = all[.., 1..];
        return device is null || device.type == DeviceType.CPU
            ? (inputs.contiguous(), targets.contiguous())
            : (inputs.to(device, non_blocking: true), targets.to(device, non_blocking: true));
    }

    /// <summary>Validation batches: the first <paramref name="maxWindows"/> non-overlapping windows of the split,
    /// in order, the same every time (as llm.c).</summary>
    public static IEnumerable<(Tensor Inputs, Tensor Targets)> Validation(ITokenSource data, int seqLen, int batchSize, long maxWindows, Device? device = null)
    {
        var layout = Layout(data, seqLen);
        return ValidationBatches(layout, batchSize, maxWindows).Select(windows => Assemble(data, layout, windows, device));
    }

    /// <summary>The window indices of each validation batch, in order (a caller assembles each in its own scope).</summary>
    internal static IEnumerable<long[]> ValidationBatches(WindowLayout layout, int batchSize, long maxWindows)
    {
        var windows = Sampling.validationWindows(layout, maxWindows);
        for (var i = 0; i < windows.Length; i += batchSize)
            yield return windows[i..Math.Min(windows.Length, i + batchSize)];
    }
}
