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
        return new TokenDataset(directory, split, shards);
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
    public (Tensor Inputs, Tensor Targets) Next(int batchSize, Device? device = null) =>
        Windows.Assemble(data, layout, NextWindows(batchSize), device);
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
        var windows = Sampling.validationWindows(layout, maxWindows);
        for (var i = 0; i < windows.Length; i += batchSize)
            yield return Assemble(data, layout, windows[i..Math.Min(windows.Length, i + batchSize)], device);
    }
}
