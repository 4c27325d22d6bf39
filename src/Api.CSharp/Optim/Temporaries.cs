using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>Where the optimizer makes its temporaries: every tensor an update, a norm or a clip creates lands in a
/// scope opened here. While a test watches (this thread only), each scope reports, as it closes, the elements of
/// its largest tensor and of all its tensors together (views included, so the counts are upper bounds), which lets
/// a test hold the temporaries of a step to the chunk size instead of a whole flat group.</summary>
static class Temporaries
{
    [ThreadStatic]
    static (long Largest, long Together)? watched;

    /// <summary>Starts watching on this thread (and forgets what was seen).</summary>
    public static void Watch() => watched = (0, 0);

    /// <summary>The largest tensor and the largest scope total seen since <see cref="Watch"/>.</summary>
    public static (long Largest, long Together) Seen => watched ?? (0, 0);

    public static Scope Open() => new(NewDisposeScope());

    public readonly struct Scope(TorchSharp.DisposeScope scope) : IDisposable
    {
        public void Dispose()
        {
            if (watched is { } seen)
            {
                var (largest, together) = seen;
                long sum = 0;
                foreach (var item in scope.DisposablesView)
                    if (item is Tensor { IsInvalid: false } t)
                    {
                        largest = Math.Max(largest, t.numel());
                        sum += t.numel();
                    }
                watched = (largest, Math.Max(together, sum));
            }
            scope.Dispose();
        }
    }
}
