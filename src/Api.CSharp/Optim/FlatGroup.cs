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
    public FlatGroup(Block block, bool decays, IReadOnlyList<OptimizedParameter> members)
    {
        Block = block;
        Decays = decays;
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

    /// <summary>Groups parameters by (block, decays), in block order.</summary>
    public static List<FlatGroup> Build(IEnumerable<OptimizedParameter> parameters) =>
        parameters.GroupBy(p => (p.Block, p.Decays)).OrderBy(g => g.Key.Block).ThenBy(g => g.Key.Decays)
            .Select(g => new FlatGroup(g.Key.Block, g.Key.Decays, g.ToList())).ToList();

    public void Dispose()
    {
        Params.Dispose();
        Grads.Dispose();
    }
}

/// <summary>How a step walks a flat buffer. On a CPU the update is memory-bound: running all of its operations
/// on one cache-sized chunk before the next keeps the intermediate passes in cache. On a GPU one kernel per
/// operation over the whole buffer is best.</summary>
static class Chunking
{
    /// <summary>Elements per chunk on the CPU (1 MiB of each of p, g, m, v and a temporary at 256K floats; the
    /// fastest of 128K-1M on the 2-core development machine, see `Benchmarks --quick`).</summary>
    public const long DefaultCpuChunk = 1 << 18;

    /// <summary>[start, start + length) pieces of a buffer: chunks of <paramref name="cpuChunk"/> elements on the
    /// CPU (0: the whole buffer), the whole buffer elsewhere.</summary>
    public static IEnumerable<(long Start, long Length)> Chunks(long length, Device device, long cpuChunk)
    {
        var chunk = device.type == DeviceType.CPU && cpuChunk > 0 ? cpuChunk : length;
        for (long start = 0; start < length; start += chunk)
            yield return (start, Math.Min(chunk, length - start));
    }
}

/// <summary>What the flat-buffer optimizers (<see cref="BlockwiseAdamW"/>, <see cref="AdamMini"/>) share: parameters
/// grouped by (block, decay) into contiguous buffers whose gradient buffers backward accumulates into.</summary>
public abstract class FlatBlockOptimizer : BlockOptimizer
{
    private protected FlatBlockOptimizer(IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> parameters, AdamSettings settings, BlockRules? rules)
        : base(parameters, settings, rules)
    {
        Groups = FlatGroup.Build(Parameters);
        Owner = FlatGroup.Owners(Groups);
    }

    private protected List<FlatGroup> Groups { get; }
    private protected Dictionary<OptimizedParameter, FlatGroup> Owner { get; }

    /// <summary>Elements per cache-sized chunk of a CPU step (0: whole buffers); a tuning knob of this optimizer.</summary>
    internal long CpuChunk { get; set; } = Chunking.DefaultCpuChunk;

    private protected IEnumerable<(long Start, long Length)> Chunks(long length, Device device) => Chunking.Chunks(length, device, CpuChunk);

    public override void ZeroGrad()
    {
        foreach (var g in Groups) g.Grads.zero_();
    }

    protected override IEnumerable<(Block Block, Tensor Gradient)> GradientBuffers() => Groups.Select(g => (g.Block, g.Grads));

    public override void Dispose()
    {
        foreach (var g in Groups) g.Dispose();
        base.Dispose();
    }
}
