using BlockwiseLR.Core;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Data;

/// <summary>Turns window indices into (inputs, targets) tensors.</summary>
public static class Windows
{
    internal static WindowLayout Layout(ITokenSource data, int seqLen)
    {
        return SamplingRules
            .Layout(seqLen, data.SegmentLengths)
            .OrThrow(reason => new DataInputException($"{data.Name}: {reason}", "SeqLen"));
    }

    internal static (Tensor Inputs, Tensor Targets) Assemble(
        ITokenSource data,
        WindowLayout layout,
        long[] windows,
        Device? device,
        long? vocab = null
    )
    {
        var length = layout.SeqLen + 1;
        var tokens = new long[windows.Length * length];
        for (var b = 0; b < windows.Length; b++)
        {
            var (shard, start) = SamplingRules.Locate(layout, windows[b]);
            data.CopyTo(shard, start, tokens.AsSpan(b * length, length));
        }
        if (vocab is { } v)
            RefuseOutOfVocab(data, tokens, v);
        var all = tensor(tokens, [windows.Length, length]);
        var inputs = all[.., ..^1];
        var targets = all[.., 1..];
        return device is null || device.type == DeviceType.CPU
            ? (inputs.contiguous(), targets.contiguous())
            : (inputs.to(device, non_blocking: true), targets.to(device, non_blocking: true));
    }

    /// <summary>A model's embedding would fail deep in libtorch on an id outside 0..vocab-1: the batch is checked on
    /// the host first (LINQ's min and max over a long[], vectorized), the error naming the id and the limit.</summary>
    static void RefuseOutOfVocab(ITokenSource data, long[] tokens, long vocab)
    {
        var (min, max) = (tokens.Min(), tokens.Max());
        if (min >= 0 && max < vocab)
            return;
        var id = min < 0 ? min : max;
        throw new DataInputException(
            $"{data.Name}: token id {id} is outside the model's vocabulary (ids 0..{vocab - 1}); give tokens of the "
                + "model's tokenizer, or a model with a larger vocabulary",
            "Model.Vocab"
        );
    }

    /// <summary>Validation batches: the first <paramref name="maxWindows"/> non-overlapping windows of the split,
    /// in order, the same every time (as llm.c).</summary>
    public static IEnumerable<(Tensor Inputs, Tensor Targets)> Validation(
        ITokenSource data,
        int seqLen,
        int batchSize,
        long maxWindows,
        Device? device = null
    )
    {
        var layout = Layout(data, seqLen);
        return ValidationBatches(layout, batchSize, maxWindows)
            .Select(windows => Assemble(data, layout, windows, device));
    }

    /// <summary>The window indices of each validation batch, in order (a caller assembles each in its own
    /// scope).</summary>
    internal static IEnumerable<long[]> ValidationBatches(WindowLayout layout, int batchSize, long maxWindows)
    {
        var windows = SamplingRules.ValidationWindows(layout, maxWindows);
        for (var i = 0; i < windows.Length; i += batchSize)
            yield return windows[i..Math.Min(windows.Length, i + batchSize)];
    }
}
