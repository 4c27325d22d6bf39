using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Distributed;

/// <summary>
/// The processes of one data-parallel run and the collectives they use: every reduction is a sum, in place,
/// on contiguous tensors. <see cref="Single"/> is a world of one (no native dependency); <see cref="Join"/>
/// joins the world this process was launched in, over MPI for CPU tensors or NCCL for CUDA tensors.
/// </summary>
public abstract class ProcessGroup : IDisposable
{
    /// <summary>This process's index in the run, 0 to <see cref="WorldSize"/> - 1.</summary>
    public int Rank { get; protected init; }

    /// <summary>Processes in the run.</summary>
    public int WorldSize { get; protected init; } = 1;

    /// <summary>This process's index among the processes of its machine (it picks the GPU).</summary>
    public int LocalRank { get; protected init; }

    /// <summary>Processes of the run on this machine.</summary>
    public int LocalWorldSize { get; protected init; } = 1;

    /// <summary>True on rank 0 (the rank that writes the run folder).</summary>
    public bool IsMain => Rank == 0;

    /// <summary>single, mpi or nccl.</summary>
    public abstract string Backend { get; }

    /// <summary>Sums <paramref name="tensor"/> over all ranks, in place.</summary>
    public abstract void AllReduce(Tensor tensor);

    /// <summary>Sums <paramref name="input"/> over all ranks and leaves rank r's piece (the counts[r] elements
    /// after those of ranks before it) in <paramref name="output"/>.</summary>
    public abstract void ReduceScatter(Tensor input, Tensor output, IReadOnlyList<long> counts);

    /// <summary>In place: each rank holds its piece of <paramref name="buffer"/> (laid out as in
    /// <see cref="ReduceScatter"/>) and afterwards every rank holds all of them.</summary>
    public abstract void AllGather(Tensor buffer, IReadOnlyList<long> counts);

    /// <summary>Checks that <paramref name="counts"/> has a piece per rank, adding up to <paramref name="buffer"/>,
    /// and that <paramref name="output"/> (of a reduce-scatter) holds this rank's piece.</summary>
    protected void CheckPieces(Tensor buffer, IReadOnlyList<long> counts, Tensor? output = null)
    {
        if (counts.Count != WorldSize)
            throw new ArgumentException($"{counts.Count} pieces for {WorldSize} ranks");
        if (counts.Sum() != buffer.numel())
            throw new ArgumentException($"pieces of {counts.Sum()} elements for a buffer of {buffer.numel()}");
        if (output is not null && output.numel() != counts[Rank])
            throw new ArgumentException(
                $"output holds {output.numel()} elements, rank {Rank}'s piece is {counts[Rank]}"
            );
    }

    /// <summary>Copies rank <paramref name="root"/>'s tensor into every rank's.</summary>
    public abstract void Broadcast(Tensor tensor, int root = 0);

    /// <summary>Returns when every rank has reached it.</summary>
    public abstract void Barrier();

    /// <summary>Ends every process of the run with <paramref name="code"/> (MPI_Abort, or this process's exit
    /// and the launcher's teardown); never returns.</summary>
    public abstract void Abort(int code);

    /// <summary>The device host values travel through (CPU for MPI, this rank's GPU for NCCL).</summary>
    public virtual Device CollectiveDevice => CPU;

    /// <summary>Sums a few host values over all ranks (one small collective).</summary>
    public double[] AllReduce(double[] values)
    {
        if (WorldSize == 1)
            return values;
        using var scope = NewDisposeScope();
        var t = tensor(values, dtype: ScalarType.Float64).to(CollectiveDevice).contiguous();
        AllReduce(t);
        return t.cpu().data<double>().ToArray();
    }

    /// <summary>Rank 0's bytes on every rank.</summary>
    public byte[] Broadcast(byte[] data)
    {
        if (WorldSize == 1)
            return data;
        using var scope = NewDisposeScope();
        var length = tensor(new long[] { data.Length }).to(CollectiveDevice).contiguous();
        Broadcast(length);
        var n = length.cpu().item<long>();
        var payload = (IsMain ? tensor(data) : zeros(n, dtype: ScalarType.Byte)).to(CollectiveDevice).contiguous();
        Broadcast(payload);
        return payload.cpu().data<byte>().ToArray();
    }

    /// <summary>Leaves the process group (frees its communicator).</summary>
    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>A world of one: every collective leaves its tensors as they are.</summary>
    public static ProcessGroup Single { get; } = new SingleProcessGroup();

    /// <summary>Joins the run this process was launched into: <see cref="Single"/> for a world of one, MPI for
    /// CPU training, NCCL for CUDA (its unique id from rank 0 over MPI under mpirun, else over TCP at the
    /// launcher's rendezvous address). Throws <see cref="DistributedException"/> with the fix.</summary>
    /// <para>BLR_PROCESS_GROUP=mpi or nccl joins that backend even in a world of one, so a one-GPU or one-CPU
    /// check runs the collectives' code path.</para>
    public static ProcessGroup Join(LaunchInfo launch, bool cuda)
    {
        var forced = Environment.GetEnvironmentVariable("BLR_PROCESS_GROUP");
        if (forced is not (null or "" or "mpi" or "nccl"))
            throw new DistributedException($"BLR_PROCESS_GROUP={forced}: give mpi or nccl (or leave it unset)");
        if (forced is "mpi" or "nccl" && (forced == "nccl") != cuda)
            throw new DistributedException(
                $"BLR_PROCESS_GROUP={forced} on {(cuda ? "CUDA" : "the CPU")}: MPI reduces CPU tensors, NCCL CUDA "
                    + $"tensors"
            );
        if (launch.WorldSize == 1 && string.IsNullOrEmpty(forced))
            return Single;
        lock (Gate)
        {
            // A process joins its world once (MPI_Init may be called once); later runs reuse the group.
            if (Current is { } joined)
                return joined.Backend == (cuda ? "nccl" : "mpi")
                    ? joined
                    : throw new DistributedException(
                        $"this process already joined its world over {joined.Backend}; train every run of one "
                            + $"process on one kind of device"
                    );
            ProcessGroup group = cuda
                ? NcclProcessGroup.Join(launch)
                : MpiProcessGroup.Join(launch.LocalRank, launch.LocalWorldSize);
            AppDomain.CurrentDomain.ProcessExit += (_, _) => group.Dispose();
            return Current = group;
        }
    }

    static readonly object Gate = new();

    /// <summary>The world this process joined (null before <see cref="Join"/> has joined one of more than one
    /// process). A failure on one rank should end with <see cref="Abort"/> on it, so the others do not wait.</summary>
    public static ProcessGroup? Current { get; private set; }
}

/// <summary>Rank 0 of a world that is only planned (how `blr inspect` lays out ZeRO-1 shards): it has a size and
/// no collectives.</summary>
sealed class PlannedProcessGroup : ProcessGroup
{
    public PlannedProcessGroup(int worldSize) => (WorldSize, LocalWorldSize) = (worldSize, worldSize);

    public override string Backend => "planned";

    static Exception None() => new InvalidOperationException("a planned process group has no collectives");

    public override void AllReduce(Tensor tensor) => throw None();

    public override void ReduceScatter(Tensor input, Tensor output, IReadOnlyList<long> counts) => throw None();

    public override void AllGather(Tensor buffer, IReadOnlyList<long> counts) => throw None();

    public override void Broadcast(Tensor tensor, int root = 0) => throw None();

    public override void Barrier() => throw None();

    public override void Abort(int code) => throw None();
}

sealed class SingleProcessGroup : ProcessGroup
{
    public override string Backend => "single";

    public override void AllReduce(Tensor tensor) { }

    public override void ReduceScatter(Tensor input, Tensor output, IReadOnlyList<long> counts)
    {
        if (!ReferenceEquals(input, output))
            output.copy_(input);
    }

    public override void AllGather(Tensor buffer, IReadOnlyList<long> counts) { }

    public override void Broadcast(Tensor tensor, int root = 0) { }

    public override void Barrier() { }

    public override void Abort(int code) => Environment.Exit(code);

    public override void Dispose() { }
}
