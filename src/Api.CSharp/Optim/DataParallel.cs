using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>How an optimizer is spread over the processes of a data-parallel run. <see cref="ZeroStage"/> 0: every
/// rank keeps all optimizer state and all-reduces gradients (in buckets of <see cref="BucketBytes"/>); 1 (ZeRO-1):
/// each rank keeps the state of its part of every flat group, gradients are reduce-scattered and the updated
/// parameters all-gathered. Parts are runs of whole grid chunks, so an Adam-mini block is never split.</summary>
/// <param name="Group">The processes of the run.</param>
/// <param name="ZeroStage">0 (every rank keeps all state) or 1 (ZeRO-1, state sharded); another value is an <see
/// cref="ArgumentException"/> when an optimizer is built.</param>
/// <param name="BucketBytes">The size of a gradient all-reduce bucket at stage 0; default 25 MiB.</param>
public sealed record DataParallel(Distributed.ProcessGroup Group, int ZeroStage = 0, long BucketBytes = 25L << 20)
{
    /// <summary>One process: no communication.</summary>
    public static DataParallel None { get; } = new(Distributed.ProcessGroup.Single);

    /// <summary>The device whose chunk grid to lay out, when it is not the parameters' (planning on the meta
    /// device).</summary>
    internal Device? GridDevice { get; init; }
}
