using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>Where a training step reads tensor data on the host: through here, counted, so a test can hold the
/// step to one read (a read waits for every kernel queued before it).</summary>
static class HostReads
{
    [ThreadStatic]
    static long count;

    /// <summary>Reads on this thread so far.</summary>
    public static long Count => count;

    public static double[] Read(Tensor values)
    {
        count++;
        return values.to(TorchSharp.torch.ScalarType.Float64).cpu().data<double>().ToArray();
    }
}
