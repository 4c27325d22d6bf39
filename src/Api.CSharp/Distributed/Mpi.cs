using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Distributed;

/// <summary>
/// MPI through P/Invoke: OpenMPI 4 or 5 (libmpi.so.40, Debian's openmpi-bin) or MPICH (libmpich.so.12), told apart by
/// probing for OpenMPI's exported globals. In OpenMPI the handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM) are
/// addresses of exported objects; in MPICH they are integer constants. Both fit a native-int argument on
/// x86-64 (an int argument occupies a full register or stack slot). Reduces CPU tensors in place.
/// </summary>
sealed unsafe class MpiProcessGroup : ProcessGroup
{
    /// The libraries to try, the launcher's own first: hydra (MPICH) sets PMI_RANK, OpenMPI's mpirun
    /// OMPI_COMM_WORLD_RANK; on a machine with both installed, the other's library would not join this world.
    static string[] Libraries() =>
        Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_RANK") is null
        && Environment.GetEnvironmentVariable("PMI_RANK") is not null
            ? ["libmpich.so.12", "libmpi.so.12", "libmpi.so.40", "libmpi.so"]
            : ["libmpi.so.40", "libmpi.so.12", "libmpich.so.12", "libmpi.so"];

    const int ThreadSerialized = 2; // MPI_THREAD_SERIALIZED in both ABIs

    readonly nint comm,
        floatType,
        doubleType,
        int64Type,
        byteType,
        sum,
        inPlace;
    readonly delegate* unmanaged<nint, nint, int, nint, nint, nint, int> allreduce;
    readonly delegate* unmanaged<nint, nint, int*, nint, nint, nint, int> reduceScatter;
    readonly delegate* unmanaged<nint, int, nint, nint, int*, int*, nint, nint, int> allgatherv;
    readonly delegate* unmanaged<nint, int, nint, int, nint, int> bcast;
    readonly delegate* unmanaged<nint, int> barrier;
    readonly delegate* unmanaged<nint, int, int> abort;
    readonly delegate* unmanaged<int> finalize;
    bool finalized;

    MpiProcessGroup(nint library, string name, int localRank, int localWorldSize)
    {
        var isOpenMpi = NativeLibrary.TryGetExport(library, "ompi_mpi_comm_world", out var world);
        if (isOpenMpi)
        {
            comm = world;
            floatType = NativeLibrary.GetExport(library, "ompi_mpi_float");
            doubleType = NativeLibrary.GetExport(library, "ompi_mpi_double");
            int64Type = NativeLibrary.GetExport(library, "ompi_mpi_int64_t");
            byteType = NativeLibrary.GetExport(library, "ompi_mpi_uint8_t");
            sum = NativeLibrary.GetExport(library, "ompi_mpi_op_sum");
            inPlace = 1;
        }
        else
        {
            (comm, floatType, doubleType, int64Type, byteType, sum, inPlace) = (
                0x44000000,
                0x4c00040a,
                0x4c00080b,
                0x4c00083a,
                0x4c00013b,
                0x58000003,
                -1
            );
        }
        Implementation = $"{(isOpenMpi ? "OpenMPI" : "MPICH")} ({name})";
        allreduce = (delegate* unmanaged<nint, nint, int, nint, nint, nint, int>)
            NativeLibrary.GetExport(library, "MPI_Allreduce");
        reduceScatter = (delegate* unmanaged<nint, nint, int*, nint, nint, nint, int>)
            NativeLibrary.GetExport(library, "MPI_Reduce_scatter");
        allgatherv = (delegate* unmanaged<nint, int, nint, nint, int*, int*, nint, nint, int>)
            NativeLibrary.GetExport(library, "MPI_Allgatherv");
        bcast = (delegate* unmanaged<nint, int, nint, int, nint, int>)NativeLibrary.GetExport(library, "MPI_Bcast");
        barrier = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(library, "MPI_Barrier");
        abort = (delegate* unmanaged<nint, int, int>)NativeLibrary.GetExport(library, "MPI_Abort");
        finalize = (delegate* unmanaged<int>)NativeLibrary.GetExport(library, "MPI_Finalize");
        var initThread = (delegate* unmanaged<int*, nint, int, int*, int>)
            NativeLibrary.GetExport(library, "MPI_Init_thread");
        var rankOf = (delegate* unmanaged<nint, int*, int>)NativeLibrary.GetExport(library, "MPI_Comm_rank");
        var sizeOf = (delegate* unmanaged<nint, int*, int>)NativeLibrary.GetExport(library, "MPI_Comm_size");
        int provided,
            rank,
            size;
        Check(initThread(null, 0, ThreadSerialized, &provided), "MPI_Init_thread");
        Check(rankOf(comm, &rank), "MPI_Comm_rank");
        Check(sizeOf(comm, &size), "MPI_Comm_size");
        (Rank, WorldSize, LocalRank, LocalWorldSize) = (rank, size, localRank, localWorldSize);
    }

    /// <summary>Joins the MPI world this process was started in (by mpirun), or throws
    /// <see cref="DistributedException"/> naming the package to install.</summary>
    public static MpiProcessGroup Join(int localRank, int localWorldSize)
    {
        foreach (var name in Libraries())
            if (NativeLibrary.TryLoad(name, out var library))
                return new MpiProcessGroup(library, name, localRank, localWorldSize);
        throw new DistributedException(
            "MPI is not installed: none of libmpi.so.40 (OpenMPI) or libmpi.so.12 (MPICH) could be loaded; install "
                + "it with `apt-get install openmpi-bin` "
                + "(or `dotnet fsi build.fsx setup` as root)"
        );
    }

    public override string Backend => "mpi";
    public string Implementation { get; }

    static void Check(int code, string call)
    {
        if (code != 0)
            throw new DistributedException($"{call} failed with MPI error {code}");
    }

    nint TypeOf(Tensor t) =>
        t.dtype switch
        {
            ScalarType.Float32 => floatType,
            ScalarType.Float64 => doubleType,
            ScalarType.Int64 => int64Type,
            ScalarType.Byte => byteType,
            _ => throw new ArgumentException(
                $"MPI collectives here take float32, float64, int64 or uint8 tensors, not {t.dtype}"
            ),
        };

    static void RequireCpu(Tensor t)
    {
        if (t.device.type != DeviceType.CPU)
            throw new DistributedException("the MPI process group reduces CPU tensors; on CUDA, training uses NCCL");
    }

    public override void AllReduce(Tensor tensor)
    {
        RequireCpu(tensor);
        var address = TensorMemory.Address(tensor);
        var size = TensorMemory.ElementSize(tensor);
        // MPI counts are int: large buffers go in pieces.
        for (long start = 0, n = tensor.numel(); start < n; start += int.MaxValue)
            Check(
                allreduce(
                    inPlace,
                    address + (nint)(start * size),
                    (int)Math.Min(int.MaxValue, n - start),
                    TypeOf(tensor),
                    sum,
                    comm
                ),
                "MPI_Allreduce"
            );
    }

    public override void ReduceScatter(Tensor input, Tensor output, IReadOnlyList<long> counts)
    {
        RequireCpu(input);
        RequireCpu(output);
        CheckPieces(input, counts, output);
        var ints = Ints(counts);
        fixed (int* c = ints)
            Check(
                reduceScatter(TensorMemory.Address(input), TensorMemory.Address(output), c, TypeOf(input), sum, comm),
                "MPI_Reduce_scatter"
            );
    }

    public override void AllGather(Tensor buffer, IReadOnlyList<long> counts)
    {
        RequireCpu(buffer);
        CheckPieces(buffer, counts);
        var ints = Ints(counts);
        var displacements = new int[ints.Length];
        for (var r = 1; r < ints.Length; r++)
            displacements[r] = checked(displacements[r - 1] + ints[r - 1]);
        fixed (int* c = ints)
        fixed (int* d = displacements)
            Check(
                allgatherv(inPlace, 0, TypeOf(buffer), TensorMemory.Address(buffer), c, d, TypeOf(buffer), comm),
                "MPI_Allgatherv"
            );
    }

    public override void Broadcast(Tensor tensor, int root = 0)
    {
        RequireCpu(tensor);
        var address = TensorMemory.Address(tensor);
        var size = TensorMemory.ElementSize(tensor);
        for (long start = 0, n = tensor.numel(); start < n; start += int.MaxValue)
            Check(
                bcast(
                    address + (nint)(start * size),
                    (int)Math.Min(int.MaxValue, n - start),
                    TypeOf(tensor),
                    root,
                    comm
                ),
                "MPI_Bcast"
            );
    }

    public override void Barrier() => Check(barrier(comm), "MPI_Barrier");

    public override void Abort(int code)
    {
        finalized = true; // no MPI_Finalize at exit: it would wait for ranks that are being killed
        abort(comm, code);
        Environment.Exit(code); // MPI_Abort does not return; if it did, still never hang
    }

    static int[] Ints(IReadOnlyList<long> counts) => counts.Select(c => checked((int)c)).ToArray();

    public override void Dispose()
    {
        if (!finalized)
        {
            finalized = true;
            finalize();
        }
    }
}
