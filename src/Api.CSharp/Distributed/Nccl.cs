using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Distributed;

/// <summary>NCCL's 128-byte ncclUniqueId, passed by value to ncclCommInitRank.</summary>
[StructLayout(LayoutKind.Sequential, Size = 128)]
unsafe struct NcclUniqueId
{
    public fixed byte Bytes[128];
}

/// <summary>
/// NCCL through P/Invoke (libnccl.so.2, loaded by soname so it binds to the copy a PyTorch CUDA install's
/// libtorch_cuda already loaded) on CUDA tensors, one process per GPU, everything on the default stream that
/// TorchSharp's kernels use. The unique id goes from rank 0 to the others over MPI under mpirun (llm.c's `mpi`
/// method) and otherwise over a TCP socket at the launcher's rendezvous address (llm.c's `tcp` method), so a GPU
/// host needs no MPI. Uneven reduce-scatter and all-gather are grouped ncclReduce and ncclBroadcast calls, one per
/// rank.
/// </summary>
sealed unsafe class NcclProcessGroup : ProcessGroup
{
    const int Float32 = 7,
        Float64 = 8,
        Int64 = 4,
        Uint8 = 1,
        Sum = 0;

    readonly nint comm;
    readonly delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int> allReduce;
    readonly delegate* unmanaged<nint, nint, nuint, int, int, int, nint, nint, int> reduce;
    readonly delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int> broadcast;
    readonly delegate* unmanaged<int> groupStart,
        groupEnd;
    readonly delegate* unmanaged<nint, int> commAbort,
        commDestroy;
    readonly delegate* unmanaged<int, nint> errorString;
    readonly MpiProcessGroup? mpi;
    bool destroyed;

    NcclProcessGroup(nint library, LaunchInfo launch, MpiProcessGroup? mpi)
    {
        this.mpi = mpi;
        (Rank, WorldSize, LocalRank, LocalWorldSize) = (
            launch.Rank,
            launch.WorldSize,
            launch.LocalRank,
            launch.LocalWorldSize
        );
        nint F(string name) => NativeLibrary.GetExport(library, name);
        allReduce = (delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int>)F("ncclAllReduce");
        reduce = (delegate* unmanaged<nint, nint, nuint, int, int, int, nint, nint, int>)F("ncclReduce");
        broadcast = (delegate* unmanaged<nint, nint, nuint, int, int, nint, nint, int>)F("ncclBroadcast");
        groupStart = (delegate* unmanaged<int>)F("ncclGroupStart");
        groupEnd = (delegate* unmanaged<int>)F("ncclGroupEnd");
        commAbort = (delegate* unmanaged<nint, int>)F("ncclCommAbort");
        commDestroy = (delegate* unmanaged<nint, int>)F("ncclCommDestroy");
        errorString = (delegate* unmanaged<int, nint>)F("ncclGetErrorString");
        var getUniqueId = (delegate* unmanaged<NcclUniqueId*, int>)F("ncclGetUniqueId");
        var initRank = (delegate* unmanaged<nint*, int, NcclUniqueId, int, int>)F("ncclCommInitRank");

        DeviceIndex = SelectDevice(launch);
        NcclUniqueId id;
        if (Rank == 0)
            Check(getUniqueId(&id), "ncclGetUniqueId");
        var bytes = new byte[128];
        if (Rank == 0)
            new ReadOnlySpan<byte>(id.Bytes, 128).CopyTo(bytes);
        bytes = mpi is not null ? mpi.Broadcast(bytes) : TcpRendezvous.ShareFromRankZero(launch, bytes);
        bytes.CopyTo(new Span<byte>(id.Bytes, 128));
        nint c;
        Check(initRank(&c, WorldSize, id, Rank), "ncclCommInitRank");
        comm = c;
    }

    public static NcclProcessGroup Join(LaunchInfo launch)
    {
        if (!NativeLibrary.TryLoad("libnccl.so.2", out var library))
            throw new DistributedException(
                "NCCL is not available: libnccl.so.2 could not be loaded; it comes with PyTorch's CUDA wheels "
                    + "(point LD_LIBRARY_PATH at site-packages/nvidia/nccl/lib) or Debian's libnccl2"
            );
        var mpi = launch.UnderMpi ? MpiProcessGroup.Join(launch.LocalRank, launch.LocalWorldSize) : null;
        return new NcclProcessGroup(library, launch, mpi);
    }

    public override string Backend => "nccl";

    /// <summary>The CUDA device this rank trains on: its local rank, or 0 when the launcher gave each process one
    /// visible device.</summary>
    public int DeviceIndex { get; }

    public override Device CollectiveDevice => new(DeviceType.CUDA, DeviceIndex);

    static int SelectDevice(LaunchInfo launch)
    {
        var visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES");
        var index =
            visible is not null && visible.Split(',', StringSplitOptions.RemoveEmptyEntries).Length == 1
                ? 0
                : launch.LocalRank;
        if (Training.CudaRuntime.TryExport("cudaSetDevice", out var setDevice))
        {
            var code = ((delegate* unmanaged<int, int>)setDevice)(index);
            if (code != 0)
                throw new DistributedException(
                    $"cudaSetDevice({index}) failed with CUDA error {code}: local rank {launch.LocalRank} has no GPU "
                        + $"of its own; start one process per GPU"
                );
            return index;
        }
        // Without it NCCL would put every rank on device 0.
        throw new DistributedException(
            "the CUDA runtime (libcudart.so.12) could not be loaded to pick this rank's GPU; put the folder of the "
                + "libcudart your libtorch uses on LD_LIBRARY_PATH"
        );
    }

    void Check(int code, string call)
    {
        if (code != 0)
            throw new DistributedException(
                $"{call} failed: {Marshal.PtrToStringAnsi(errorString(code))} (NCCL error {code}); NCCL_DEBUG=WARN "
                    + $"says more"
            );
    }

    static int TypeOf(Tensor t) =>
        t.dtype switch
        {
            ScalarType.Float32 => Float32,
            ScalarType.Float64 => Float64,
            ScalarType.Int64 => Int64,
            ScalarType.Byte => Uint8,
            _ => throw new ArgumentException(
                $"NCCL collectives here take float32, float64, int64 or uint8 tensors, not {t.dtype}"
            ),
        };

    static void RequireCuda(Tensor t)
    {
        if (t.device.type != DeviceType.CUDA)
            throw new DistributedException(
                "the NCCL process group reduces CUDA tensors; on the CPU, training uses MPI"
            );
    }

    public override void AllReduce(Tensor tensor)
    {
        RequireCuda(tensor);
        var address = TensorMemory.Address(tensor);
        Check(allReduce(address, address, (nuint)tensor.numel(), TypeOf(tensor), Sum, comm, 0), "ncclAllReduce");
    }

    /// <summary>The calls of <paramref name="body"/> as one NCCL group, closed even when one of them fails.</summary>
    void Grouped(Action body)
    {
        Check(groupStart(), "ncclGroupStart");
        try
        {
            body();
        }
        finally
        {
            Check(groupEnd(), "ncclGroupEnd");
        }
    }

    public override void ReduceScatter(Tensor input, Tensor output, IReadOnlyList<long> counts)
    {
        RequireCuda(input);
        CheckPieces(input, counts, output);
        var size = TensorMemory.ElementSize(input);
        var (address, target) = (TensorMemory.Address(input), TensorMemory.Address(output));
        Grouped(() =>
        {
            long offset = 0;
            for (var r = 0; r < WorldSize; r++)
            {
                if (counts[r] > 0)
                    Check(
                        reduce(
                            address + (nint)(offset * size),
                            r == Rank ? target : 0,
                            (nuint)counts[r],
                            TypeOf(input),
                            Sum,
                            r,
                            comm,
                            0
                        ),
                        "ncclReduce"
                    );
                offset += counts[r];
            }
        });
    }

    public override void AllGather(Tensor buffer, IReadOnlyList<long> counts)
    {
        RequireCuda(buffer);
        CheckPieces(buffer, counts);
        var size = TensorMemory.ElementSize(buffer);
        var address = TensorMemory.Address(buffer);
        Grouped(() =>
        {
            long offset = 0;
            for (var r = 0; r < WorldSize; r++)
            {
                var piece = address + (nint)(offset * size);
                if (counts[r] > 0)
                    Check(broadcast(piece, piece, (nuint)counts[r], TypeOf(buffer), r, comm, 0), "ncclBroadcast");
                offset += counts[r];
            }
        });
    }

    public override void Broadcast(Tensor tensor, int root = 0)
    {
        RequireCuda(tensor);
        var address = TensorMemory.Address(tensor);
        Check(broadcast(address, address, (nuint)tensor.numel(), TypeOf(tensor), root, comm, 0), "ncclBroadcast");
    }

    public override void Barrier()
    {
        using var scope = NewDisposeScope();
        AllReduce(zeros(1, device: CollectiveDevice));
        cuda.synchronize();
    }

    public override void Abort(int code)
    {
        destroyed = true;
        commAbort(comm);
        if (mpi is not null)
            mpi.Abort(code);
        Environment.Exit(code);
    }

    public override void Dispose()
    {
        if (destroyed)
            return;
        destroyed = true;
        commDestroy(comm);
        mpi?.Dispose();
    }
}
