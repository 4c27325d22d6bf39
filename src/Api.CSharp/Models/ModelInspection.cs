using BlockwiseLR.Core;

namespace BlockwiseLR.Models;

/// <summary>What `blr inspect` reports: parameters per block and a training-memory estimate, computed from
/// the config's shapes alone (no weights are allocated).</summary>
/// <param name="Config">The model inspected.</param>
/// <param name="ParametersByBlock">Parameters (elements) in each block.</param>
/// <param name="OptimizerStateBytesByBlock">Bytes of optimizer state for each block.</param>
/// <param name="Parameters">Parameters (elements) in the whole model.</param>
/// <param name="WeightBytes">Bytes of the fp32 weights.</param>
/// <param name="GradientBytes">Bytes of the gradients.</param>
/// <param name="OptimizerStateBytes">Bytes of optimizer state in all.</param>
/// <param name="ActivationBytes">Estimated bytes of the activations kept for the backward pass.</param>
public sealed record ModelInspection(
    ModelConfig Config,
    IReadOnlyDictionary<Block, long> ParametersByBlock,
    IReadOnlyDictionary<Block, long> OptimizerStateBytesByBlock,
    long Parameters,
    long WeightBytes,
    long GradientBytes,
    long OptimizerStateBytes,
    long ActivationBytes
)
{
    /// <summary>The training-memory estimate in bytes: weights, gradients, optimizer state and activations.</summary>
    public long TotalBytes => WeightBytes + GradientBytes + OptimizerStateBytes + ActivationBytes;

    /// <summary>Throws <see cref="ArgumentException"/> with a one-line message for bad names or sizes.</summary>
    /// <param name="config">the model.</param>
    /// <param name="optimizer">the optimizer whose state is counted.</param>
    /// <param name="precision">how the model computes.</param>
    /// <param name="batchSize">sequences per step.</param>
    /// <param name="seqLen">tokens per sequence.</param>
    /// <param name="mathAttention">true where attention materializes T x T probabilities (CPU).</param>
    public static ModelInspection Of(
        ModelConfig config,
        OptimizerKind optimizer,
        Precision precision,
        int batchSize,
        int seqLen,
        bool mathAttention
    )
    {
        var family = OptimizerKinds.Family(optimizer);
        var m = MemoryRules
            .Estimate(config, family, precision, batchSize, seqLen, mathAttention)
            .OrThrow(reason => new ArgumentException(reason));
        var shapes = ModelConfigRules.Parameters(config).Select(p => new ParameterShape(p.Key, p.Value));
        var stateByBlock = MemoryRules
            .OptimizerStateBytesByBlock(config, family)
            .Value.ToDictionary(b => b.Key.ToCSharp(), b => b.Value);
        return new ModelInspection(
            config,
            BlockRules.Default.CountByBlock(shapes),
            stateByBlock,
            m.Parameters,
            m.WeightBytes,
            m.GradientBytes,
            m.OptimizerStateBytes,
            m.ActivationBytes
        );
    }

    /// <summary>The optimizer state bytes of each of <paramref name="processes"/> ranks under ZeRO-1: the optimizer
    /// itself lays out its shards over parameters on the meta device (nothing is allocated), as it does in training
    /// on <paramref name="cuda"/> or the CPU.</summary>
    public static IReadOnlyList<long> ShardedStateBytes(
        ModelConfig config,
        OptimizerKind optimizer,
        int processes,
        bool cuda
    )
    {
        if (processes < 1)
            throw new ArgumentException($"{processes} processes: give 1 or more");
        TorchRuntime.EnsureAvailable();
        using var scope = TorchSharp.torch.NewDisposeScope();
        var parameters = ModelConfigRules
            .Parameters(config)
            .Select(p =>
                (
                    p.Key,
                    new TorchSharp.Modules.Parameter(TorchSharp.torch.empty(p.Value, device: TorchSharp.torch.META))
                )
            )
            .ToList();
        var parallel = new Optim.DataParallel(new Distributed.PlannedProcessGroup(processes), ZeroStage: 1)
        {
            GridDevice = cuda ? new TorchSharp.torch.Device(TorchSharp.DeviceType.CUDA) : TorchSharp.torch.CPU,
        };
        using var planned = (Optim.FlatBlockOptimizer)
            Optim.BlockOptimizer.Create(
                optimizer,
                parameters,
                new Optim.AdamSettings(),
                ModelConfigRules.Attention(config),
                parallel: parallel
            );
        return planned.StateBytesPerRank();
    }
}
