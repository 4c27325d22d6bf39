using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>
/// The parameters of one block kind (and one weight-decay flag) laid end to end in one contiguous buffer, with
/// a gradient buffer of the same layout. Each parameter is re-pointed (set_) at its slice of the buffer and its
/// .grad is a view of the gradient buffer, so backward accumulates in place and a step is a few large in-place
/// operations. These gradient buckets are what a multi-GPU all-reduce would send.
/// </summary>
sealed class FlatGroup : IDisposable
{
    public FlatGroup(Block block, bool decays, IReadOnlyList<OptimizedParameter> members, bool orthogonalized = false)
    {
        Block = block;
        Decays = decays;
        Orthogonalized = orthogonalized;
        Members = members;
        var device = members[0].Tensor.device;
        var total = members.Sum(m => m.Numel);
        Params = empty(total, dtype: ScalarType.Float32, device: device).DetachFromDisposeScope();
        Grads = zeros(total, dtype: ScalarType.Float32, device: device).DetachFromDisposeScope();
        var offsets = new List<long>();
        using var noGrad = no_grad();
        long offset = 0;
        foreach (var member in members)
        {
            offsets.Add(offset);
            var slice = View(Params, offset, member);
            slice.copy_(member.Tensor);
            member.Tensor.set_(slice);
            member.Tensor.grad = View(Grads, offset, member);
            offset += member.Numel;
        }
        Offsets = offsets;
        index = members.Select((m, i) => (m, i)).ToDictionary(x => x.m, x => x.i);
    }

    readonly Dictionary<OptimizedParameter, int> index;

    public Block Block { get; }
    public bool Decays { get; }

    /// <summary>Whether the members are matrices Muon orthogonalizes (kept apart from its AdamW parameters).</summary>
    public bool Orthogonalized { get; }
    public IReadOnlyList<OptimizedParameter> Members { get; }
    public IReadOnlyList<long> Offsets { get; }
    public Tensor Params { get; }
    public Tensor Grads { get; }
    public long Length => Params.shape[0];

    /// <summary>The slice of a flat buffer that holds one member, in the member's shape.</summary>
    public static Tensor View(Tensor flat, long offset, OptimizedParameter member) =>
        flat.narrow(0, offset, member.Numel).view(member.Tensor.shape);

    public Tensor Slice(Tensor flat, OptimizedParameter member) => View(flat, Offsets[IndexOf(member)], member);

    /// <summary>The member's position in <see cref="Members"/>.</summary>
    public int IndexOf(OptimizedParameter member) => index[member];

    /// <summary>The group that holds each parameter.</summary>
    public static Dictionary<OptimizedParameter, FlatGroup> Owners(IEnumerable<FlatGroup> groups) =>
        groups.SelectMany(g => g.Members.Select(m => (m, g))).ToDictionary(x => x.m, x => x.g);

    /// <summary>Groups parameters by (block, decays, orthogonalized), in block order.</summary>
    public static List<FlatGroup> Build(
        IEnumerable<OptimizedParameter> parameters,
        Func<OptimizedParameter, bool>? orthogonalized = null
    ) =>
        parameters
            .GroupBy(p => (p.Block, p.Decays, Ortho: orthogonalized?.Invoke(p) ?? false))
            .OrderBy(g => g.Key.Block)
            .ThenBy(g => g.Key.Decays)
            .ThenBy(g => g.Key.Ortho)
            .Select(g => new FlatGroup(g.Key.Block, g.Key.Decays, g.ToList(), g.Key.Ortho))
            .ToList();

    public void Dispose()
    {
        Params.Dispose();
        Grads.Dispose();
    }
}

/// <summary>One piece of a flat group's fixed chunk grid: elements [Start, Start + Length) made of whole v-blocks of
/// <see cref="BlockSize"/> elements (1 for AdamW), the first of them v-block number <see cref="VStart"/>.</summary>
readonly record struct GridChunk(long Start, long Length, long BlockSize, long VStart)
{
    public long Blocks => Length / BlockSize;
}

/// <summary>How a step walks a flat buffer: a fixed grid of chunks, cut at v-block boundaries, that depends on
/// the group's layout and the device only, never on the number of processes. Updates, gradient norms and ZeRO-1
/// shards all follow it, so each chunk is computed the same way however the state is sharded. On a CPU the update
/// is memory-bound: running all of its operations on one cache-sized chunk before the next keeps the passes in
/// cache. On a GPU chunks are large (few launches) and bound the temporaries.</summary>
static class Chunking
{
    /// <summary>Elements per chunk on the CPU (1 MiB of each of p, g, m, v and a temporary at 256K floats; the
    /// fastest of 128K-1M on the 2-core development machine, see `Benchmarks --quick`).</summary>
    public const long DefaultCpuChunk = 1 << 18;

    /// <summary>Elements per chunk on CUDA: 16M floats, 64 MiB per temporary.</summary>
    public const long DefaultCudaChunk = 1 << 24;

    /// <summary>The grid over segments of v-blocks (offset, blocks, block size), laid end to end: each segment cut
    /// into runs of whole blocks of about <paramref name="chunk"/> elements (at least one block).</summary>
    public static List<GridChunk> Grid(IEnumerable<(long Offset, long Blocks, long BlockSize)> segments, long chunk)
    {
        var grid = new List<GridChunk>();
        long v = 0;
        foreach (var (offset, blocks, size) in segments)
        {
            var perChunk = Math.Max(1, chunk / size);
            for (long first = 0; first < blocks; first += perChunk)
                grid.Add(
                    new GridChunk(offset + first * size, Math.Min(perChunk, blocks - first) * size, size, v + first)
                );
            v += blocks;
        }
        return grid;
    }
}
