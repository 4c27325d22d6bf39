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
/// or gradient, let auto ratios observe the gradients, clip, update.
/// </summary>
sealed class TrainingStep(
    nn.Module<Tensor, Tensor> model,
    BlockOptimizer optimizer,
    BatchSampler sampler,
    RunSetup setup,
    AutoRatioTracker? auto,
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
        var (lossSum, smallSquared) = ForwardBackward();

        // Reduce: one small transfer brings the loss (summed over ranks), every block's squared gradient norm and
        // the first micro-batch's squared norms (auto ratios with micro-batches) to the host.
        optimizer.ReduceGradients();
        var (squared, values) = optimizer.NormsAnd(smallSquared is null ? lossSum : cat([lossSum, smallSquared], 0));
        var loss = values[0];
        var total = Math.Sqrt(squared.Values.Sum());

        // Guard: nothing non-finite reaches the weights.
        if (!double.IsFinite(loss) || !double.IsFinite(total))
            throw Diverged(step, loss, total, lastCheckpoint);

        // Observe: auto ratios read this step's gradients before clipping.
        auto?.Observe(squared, smallSquared is null ? null : values[1..]);

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

    /// <summary>The loss summed over this rank's micro-batches (each scaled by 1 / accumulation steps, so the
    /// summed gradients are the mean over the global batch) and, when auto ratios measure gradient noise, each
    /// block's squared norm of the first micro-batch's gradient (rank 0's share; null otherwise).</summary>
    (Tensor LossSum, Tensor? SmallSquared) ForwardBackward()
    {
        model.train();
        optimizer.ZeroGrad();
        var lossSum = zeros(1, dtype: float64, device: device);
        var windows = sampler.NextWindows(o.Training.BatchSize);
        var measureNoise = auto is { MeasuresNoise: true };
        var smallSquared = measureNoise ? zeros(auto!.Blocks.Count, dtype: float64, device: device) : null;
        var share = o.Training.BatchSize / setup.Group.WorldSize;
        var rank = setup.Group.Rank;
        for (var first = rank * share; first < (rank + 1) * share; first += resolved.MicroBatch)
        {
            using var microScope = NewDisposeScope();
            var (inputs, targets) = sampler.Batch(windows[first..(first + resolved.MicroBatch)], device);
            var microLoss = LanguageModel.Loss(model.forward(inputs), targets) / resolved.Accumulation;
            microLoss.backward();
            lossSum.add_(microLoss.detach().to(float64));
            // The buffer holds the first micro-batch's gradient / accumulation steps.
            if (measureNoise && first == 0)
            {
                var scale = (double)resolved.Accumulation * resolved.Accumulation;
                smallSquared!.copy_(optimizer.LocalSquaredNorms(auto!.Blocks).mul_(scale));
            }
        }
        return (lossSum, smallSquared);
    }

    TrainingDivergedException Diverged(int step, double loss, double total, string? lastCheckpoint)
    {
        var (what, value) = double.IsFinite(loss) ? ("gradient norm", total) : ("loss", loss);
        return new TrainingDivergedException(
            $"step {step}: the {what} is {value}; training stopped before the update"
                + (lastCheckpoint is null ? "" : $"; the last good checkpoint is {lastCheckpoint}")
                + "; lower the LR or the ratios"
                + (o.Training.Precision == Precision.Fp32 ? "" : ", or train in fp32")
        );
    }
}
