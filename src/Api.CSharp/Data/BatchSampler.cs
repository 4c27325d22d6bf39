using BlockwiseLR.Core;
using static TorchSharp.torch;

namespace BlockwiseLR.Data;

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

    /// <summary>A sampler over <paramref name="data"/> of windows of <paramref name="seqLen"/> + 1 tokens, its order
    /// seeded by <paramref name="seed"/>, starting at <paramref name="start"/> (default: epoch 0, index 0).</summary>
    public BatchSampler(ITokenSource data, int seqLen, ulong seed, SamplerPosition? start = null)
    {
        this.data = data;
        this.seed = seed;
        layout = Windows.Layout(data, seqLen);
        Position = start ?? new SamplerPosition(0, 0);
    }

    /// <summary>Tokens per input sequence (each window holds one more, the last target).</summary>
    public int SeqLen => layout.SeqLen;

    /// <summary>Windows in one pass over the data (one epoch).</summary>
    public long WindowsPerEpoch => layout.Total;

    /// <summary>The epoch and the index of the next window in its order (what a checkpoint saves).</summary>
    public SamplerPosition Position { get; private set; }

    long[] Order(int epoch)
    {
        if (cached is not { } c || c.Epoch != epoch)
            cached = (epoch, SamplingRules.Permutation(seed, epoch, layout.Total));
        return cached.Value.Order;
    }

    /// <summary>The next window indices, advancing the position.</summary>
    public long[] NextWindows(int batchSize)
    {
        var (windows, next) = SamplingRules.Take(Order, layout.Total, Position, batchSize);
        Position = next;
        return windows;
    }

    /// <summary>Inputs and targets, (B, T) int64 each: targets are the inputs shifted by one token.</summary>
    public (Tensor Inputs, Tensor Targets) Next(int batchSize, Device? device = null) =>
        Batch(NextWindows(batchSize), device);

    /// <summary>Inputs and targets of the given windows (a share of <see cref="NextWindows"/>).</summary>
    public (Tensor Inputs, Tensor Targets) Batch(long[] windows, Device? device = null) =>
        Windows.Assemble(data, layout, windows, device, Vocab);

    /// <summary>The model's vocabulary when the trainer checks every batch's ids against it (null: unchecked).
    /// </summary>
    internal long? Vocab { get; init; }
}
