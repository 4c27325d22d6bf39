using System.Diagnostics;
using BlockwiseLR.Core;
using BlockwiseLR.Data;
using BlockwiseLR.Models;
using BlockwiseLR.Optim;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

/// <summary>What one optimizer step measured: the mean loss over the global batch, each block's squared gradient
/// norm (after the reduction, before clipping), the time it took, and the device memory in use after it (CUDA; the
/// trainer reads it once the step's temporaries are freed, before evaluation).</summary>
sealed record StepOutcome(
    double Loss,
    IReadOnlyDictionary<Block, double> SquaredNorms,
    double Milliseconds,
    double CollectiveMilliseconds,
    long? DeviceMemoryBytes
);

/// <summary>
/// One optimizer step, as nanoGPT's and llm.c's loops run it: forward and backward over this rank's micro-batches
/// (gradients accumulate to the mean over the global batch), reduce across ranks, guard against a non-finite loss
/// or gradient, let auto ratios and the noise-scale monitor observe the gradients, clip, update.
/// </summary>
sealed class TrainingStep(
    nn.Module<Tensor, Tensor> model,
    BlockOptimizer optimizer,
    BatchSampler sampler,
    RunSetup setup,
    AutoRatioTracker? auto,
    NoiseScaleMonitor? noise,
    IReadOnlyList<Block> blocks,
    Func<Block, int, double> learningRate
)
{
    readonly PretrainOptions o = setup.Options;
    readonly ResolvedOptions resolved = setup.Resolved;
    readonly Device device = setup.Device;

    public StepOutcome Run(int step, string? lastCheckpoint)
    {
        var clock = Stopwatch.StartNew();
        var collectiveBefore = optimizer.CollectiveMilliseconds;
        using var scope = NewDisposeScope();

        // Forward and backward: rank r takes its share of the global batch, drawn from the one permutation every
        // rank walks.
        var monitored = noise?.MeasuresAt(step) == true;
        var (lossSum, smallSquared) = ForwardBackward(auto is { MeasuresNoise: true } || monitored);

        // Reduce: one small transfer brings the loss (summed over ranks), every block's squared gradient norm and,
        // on a step that measures gradient noise, the small batch's squared norms to the host.
        optimizer.ReduceGradients();
        var (squared, values) = optimizer.NormsAnd(smallSquared is null ? lossSum : cat([lossSum, smallSquared], 0));
        var loss = values[0];
        var total = Math.Sqrt(squared.Values.Sum());

        // Guard: nothing non-finite reaches the weights.
        if (!double.IsFinite(loss) || !double.IsFinite(total))
            throw Diverged(step, loss, total, lastCheckpoint);

        // Observe: auto ratios and the noise-scale monitor read this step's gradients before clipping.
        var small = smallSquared is null ? null : values[1..];
        auto?.Observe(blocks, squared, auto.MeasuresNoise ? small : null);
        if (monitored)
            noise!.Observe(blocks, squared, small!);

        // Clip and update.
        if (o.Training.GradClip > 0 && total > o.Training.GradClip)
            optimizer.ScaleGradients(o.Training.GradClip / (total + 1e-6));
        optimizer.Step(block => learningRate(block, step));
        if (device.type == DeviceType.CUDA)
            cuda.synchronize();
        return new StepOutcome(
            loss,
            squared,
            clock.Elapsed.TotalMilliseconds,
            optimizer.CollectiveMilliseconds - collectiveBefore,
            null
        );
    }

    /// <summary>The loss summed over this rank's micro-batches (each scaled by its share of the global batch, so the
    /// summed gradients are the mean over the global batch) and, when <paramref name="measureNoise"/>, each block's
    /// squared norm of the small batch's gradient (rank 0's first micro-batch, or the first half of a batch of one
    /// micro-batch, <see cref="ResolvedOptions.NoiseBatch"/>; null otherwise).</summary>
    (Tensor LossSum, Tensor? SmallSquared) ForwardBackward(bool measureNoise)
    {
        model.train();
        optimizer.ZeroGrad();
        var lossSum = zeros(1, dtype: float64, device: device);
        var windows = sampler.NextWindows(o.Training.BatchSize);
        var smallSquared = measureNoise ? zeros(blocks.Count, dtype: float64, device: device) : null;
        var batch = o.Training.BatchSize;
        var share = batch / setup.Group.WorldSize;
        foreach (var (first, count) in Pieces(measureNoise && resolved.SplitsForNoise, share))
        {
            using var microScope = NewDisposeScope();
            var (inputs, targets) = sampler.Batch(windows[first..(first + count)], device);
            var loss = LanguageModel.Loss(model.forward(inputs), targets);
            // Equal micro-batches divide by their number (as every earlier version did); halves weigh by their size.
            var microLoss =
                count == resolved.MicroBatch ? loss / resolved.Accumulation : loss * ((double)count / batch);
            microLoss.backward();
            lossSum.add_(microLoss.detach().to(float64));
            // The buffer holds the small batch's gradient x count / batch.
            if (measureNoise && first == 0)
            {
                var scale = (double)batch / count;
                smallSquared!.copy_(optimizer.LocalSquaredNorms(blocks).mul_(scale * scale));
            }
        }
        return (lossSum, smallSquared);
    }

    /// <summary>This rank's pieces of the global batch (first window, count): its micro-batches, or the two halves
    /// of its one micro-batch when the step measures noise that way.</summary>
    IEnumerable<(int First, int Count)> Pieces(bool split, int share)
    {
        var rank = setup.Group.Rank;
        if (split)
        {
            var half = resolved.NoiseBatch;
            return [(rank * share, half), (rank * share + half, share - half)];
        }
        return Enumerable
            .Range(0, share / resolved.MicroBatch)
            .Select(i => (rank * share + i * resolved.MicroBatch, resolved.MicroBatch));
    }

    /// <summary>The divergence of the step run as <paramref name="step"/> (0-based): its message numbers it as every
    /// report does, step + 1 (the update it would have been).</summary>
    TrainingDivergedException Diverged(int step, double loss, double total, string? lastCheckpoint)
    {
        var (what, value) = double.IsFinite(loss) ? ("gradient norm", total) : ("loss", loss);
        return new TrainingDivergedException(
            $"step {step + 1}: the {what} is {value}; training stopped before the update"
                + (lastCheckpoint is null ? "" : $"; the last good checkpoint is {lastCheckpoint}")
                + "; lower the LR or the ratios"
                + (o.Training.Precision == Precision.Fp32 ? "" : ", or train in fp32")
        );
    }
}
