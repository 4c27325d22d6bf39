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
        Device? device
    )
    {
        var length = layout.SeqLen + 1;
        var tokens = new long[windows.Length * length];
        for (var b = 0; b < windows.Length; b++)
        {
            var (shard, start) = SamplingRules.Locate(layout, windows[b]);
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
