using BlockwiseLR.Core;
using BlockwiseLR.Models;

namespace BlockwiseLR;

/// <summary>The model to train (<see cref="PretrainOptions.Model"/>).</summary>
public sealed record ModelOptions
{
    /// <summary>A named config (gpt2-tiny, llama-0.25b, ...; see <see cref="ModelConfigs.Names"/>).</summary>
    public string Name { get; init; } = "gpt2-tiny";

    /// <summary>Changes to the named config.</summary>
    public ModelOverrides Overrides { get; init; } = ModelOverrides.None;

    /// <summary>A whole config built in code (<see cref="ModelConfigs.Gpt2"/>, <see cref="ModelConfigs.Llama"/>,
    /// <see cref="ModelConfigs.With"/>); when set, <see cref="Name"/> and <see cref="Overrides"/> are not
    /// used.</summary>
    public ModelConfig? Config { get; init; }
}

/// <summary>The tokens to train on (<see cref="PretrainOptions.Data"/>).</summary>
public sealed record DataOptions
{
    /// <summary>A folder of shards from `blr prepare` (<see cref="BlockwiseLR.ShardPreparer"/>).</summary>
    public string Path { get; init; } = "";
}

/// <summary>The optimizer and its hyperparameters (<see cref="PretrainOptions.Optimizer"/>).</summary>
public sealed record OptimizerOptions
{
    /// <summary>The optimizer; default BlockwiseAdamW.</summary>
    public OptimizerKind Kind { get; init; } = OptimizerKind.BlockwiseAdamW;

    /// <summary>The blockwise optimizers' ratios. A plain optimizer (AdamW, AdamMini, Lion, Muon) gives every block
    /// the base LR: it takes <see cref="BlockRatios.Uniform"/> or the default, and refuses any other ratios with an
    /// <see cref="InvalidOptionException"/> (choose the blockwise kind, e.g. OptimizerKind.BlockwiseAdamW). Default:
    /// auto, set from each block's measured sharpness and gradient noise; the batch-size sweep (docs/sweep) found
    /// the paper's fixed ratios losing to tuned AdamW below and around the gradient-noise scale, where auto ties
    /// it, and winning inside the seed spread at 16x it, where auto keeps most of their gain.</summary>
    public BlockRatios Ratios { get; init; } = BlockRatios.Auto();

    /// <summary>Adam's beta1 (Lion's interpolation beta); unset: the family's recipe, 0.9 (Lion 0.95).</summary>
    public double? Beta1 { get; init; }

    /// <summary>Adam's beta2 (Lion's momentum beta); unset: the family's recipe, 0.95 (Lion 0.98).</summary>
    public double? Beta2 { get; init; }

    /// <summary>Adam's epsilon, added to the square root of the second moment; default 1e-8.</summary>
    public double Eps { get; init; } = 1e-8;

    /// <summary>Weight decay, p *= 1 - lr*wd each step; unset: the family's recipe, 0.1 (Lion 1.0: the official scripts
    /// give Lion a tenth of AdamW's LR, so set <see cref="ScheduleOptions.Lr"/> to match).</summary>
    public double? WeightDecay { get; init; }

    /// <summary>Muon's Newton-Schulz precision (default Auto: bfloat16 on CUDA as the reference runs it, float32 on
    /// the CPU).</summary>
    public NewtonSchulzPrecision NewtonSchulz { get; init; } = NewtonSchulzPrecision.Auto;

    /// <summary>Which parameters decay (default: all for AdamW, Adam-mini's names for Adam-mini).</summary>
    public WeightDecayPolicy? WeightDecayPolicy { get; init; }

    /// <summary>These options with the family's recipe where a beta or the weight decay is unset.</summary>
    public OptimizerOptions WithRecipe()
    {
        var recipe = OptimizerKinds.Recipe(OptimizerKinds.Family(Kind));
        return this with
        {
            Beta1 = Beta1 ?? recipe.Beta1,
            Beta2 = Beta2 ?? recipe.Beta2,
            WeightDecay = WeightDecay ?? recipe.WeightDecay,
        };
    }
}

/// <summary>The learning-rate schedule every block follows, each at its own peak
/// (<see cref="PretrainOptions.Schedule"/>).</summary>
public sealed record ScheduleOptions
{
    /// <summary>The schedule's shape after warmup; default cosine decay to the floor.</summary>
    public LrSchedule Kind { get; init; } = LrSchedule.Cosine;

    /// <summary>Base (AdamW) peak learning rate; a block's peak is its ratio times this.</summary>
    public double Lr { get; init; } = 6e-4;

    /// <summary>Warmup steps (default: <see cref="BlockSchedule.DefaultWarmup"/>, 2% of the run, at least 1).</summary>
    public int? WarmupSteps { get; init; }

    /// <summary>The one floor every block decays to (default: <see cref="BlockSchedule.DefaultFloor"/>, Lr /
    /// 20).</summary>
    public double? FloorLr { get; init; }

    /// <summary>A block's warmup is ratio times longer (equal warmup slopes).</summary>
    public bool AlphaWarmup { get; init; }
}

/// <summary>The steps, batches and numerics of training (<see cref="PretrainOptions.Training"/>).</summary>
public sealed record TrainingOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 1000;

    /// <summary>Sequences per optimizer step (the global batch).</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Sequences per forward/backward (default: the batch size); gradients accumulate up to the
    /// batch.</summary>
    public int? MicroBatchSize { get; init; }

    /// <summary>Tokens per sequence (default: the model's context).</summary>
    public int? SeqLen { get; init; }

    /// <summary>Seed of initialization and data order.</summary>
    public ulong Seed { get; init; } = 1337;

    /// <summary>How the forward pass computes (the weights stay fp32); default fp32.</summary>
    public Precision Precision { get; init; } = Precision.Fp32;

    /// <summary>Global gradient-norm clip; 0 turns it off.</summary>
    public double GradClip { get; init; } = 1.0;

    /// <summary>Where the run computes; default the CPU.</summary>
    public ComputeDevice Device { get; init; } = ComputeDevice.Cpu;

    /// <summary>CPU threads for libtorch (default: libtorch's choice; at N processes per machine, cores / N
    /// each).</summary>
    public int? Threads { get; init; }
}

/// <summary>Evaluation on the fixed validation windows (<see cref="PretrainOptions.Evaluation"/>).</summary>
public sealed record EvaluationOptions
{
    /// <summary>Evaluate every N steps (and at the end); 0: only at the end.</summary>
    public int Every { get; init; } = 100;

    /// <summary>Validation windows (the first N of the val split).</summary>
    public int Windows { get; init; } = 64;
}

/// <summary>The run folder (<see cref="PretrainOptions.Run"/>).</summary>
public sealed record RunOptions
{
    /// <summary>The run folder: options.json, metrics.jsonl, evals.csv, tensorboard/, checkpoints/,
    /// result.json.</summary>
    public string Out { get; init; } = "runs/run";

    /// <summary>Replace the run already in Out (its options, metrics, checkpoints and result); without it, an Out
    /// that holds a run is refused unless the run is resumed.</summary>
    public bool Overwrite { get; init; }
}

/// <summary>Checkpoints written, and the one a run starts from (<see cref="PretrainOptions.Checkpoint"/>).</summary>
public sealed record CheckpointOptions
{
    /// <summary>Checkpoint every N steps (and at the end); 0: only at the end.</summary>
    public int Every { get; init; }

    /// <summary>Checkpoints kept (the newest).</summary>
    public int Keep { get; init; } = 2;

    /// <summary>"latest" (the newest checkpoint in the run folder) or a checkpoint folder.</summary>
    public string? Resume { get; init; }

    /// <summary>Start from the weights of a Hugging Face folder, checkpoint or run (same model shape), with a
    /// fresh optimizer and schedule.</summary>
    public string? InitFrom { get; init; }
}

/// <summary>Data parallelism across processes (<see cref="PretrainOptions.Parallelism"/>).</summary>
public sealed record ParallelismOptions
{
    /// <summary>ZeRO stage of a data-parallel run: 0 (every rank keeps all optimizer state) or 1 (each rank keeps
    /// the state of its part of every flat group).</summary>
    public int Zero { get; init; }

    /// <summary>Size in MiB of the pieces gradients are all-reduced in (ZeRO-0).</summary>
    public double BucketMb { get; init; } = 25;
}

/// <summary>Measurements and checks that do not change what is trained (<see cref="PretrainOptions.Debug"/>).</summary>
public sealed record DebugOptions
{
    /// <summary>Log the proxy sharpness per block (B ||grad_b||^2 / #params(b), from the step's gradients) into
    /// metrics.jsonl every N steps; 0: off.</summary>
    public int SharpnessEvery { get; init; }

    /// <summary>Log the gradient-noise scale B_simple = tr(Sigma) / |G|^2 in tokens, of the whole model and of each
    /// block, into metrics.jsonl every N steps; 0: off. A measured step compares the gradient of part of the batch
    /// (the first micro-batch, or the first half) with the whole batch's; the estimates are smoothed across
    /// measurements (docs/method.md section 10). The batch then runs in two halves, which changes the gradient only
    /// by float rounding.</summary>
    public int NoiseScaleEvery { get; init; }

    /// <summary>The GPU's dense peak TFLOP/s for MFU in the metrics, or a name from the table: h100, h200, a100
    /// (default h100 on CUDA; no MFU on the CPU).</summary>
    public string? PeakTflops { get; init; }

    /// <summary>Deterministic algorithms for the process (<see cref="TorchRuntime.UseDeterministicAlgorithms"/>):
    /// on CUDA, kernels that can vary between runs are replaced by deterministic ones, or the step fails naming the
    /// operation. CPU runs are deterministic for a fixed thread count without it.</summary>
    public bool Deterministic { get; init; }

    /// <summary>Train with the plain per-parameter optimizers the flat-buffer ones are tested against (slow; one
    /// process): for checking the fast ones over a whole run.</summary>
    internal bool ReferenceOptimizer { get; init; }
}
