using BlockwiseLR.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>What the flat-buffer optimizers (<see cref="BlockwiseAdamW"/>, <see cref="AdamMini"/>,
/// <see cref="BlockwiseLion"/>, <see cref="Muon"/>) share: parameters grouped by (block, decay, and for Muon whether
/// it orthogonalizes them) into contiguous buffers whose gradient buffers backward accumulates into, a fixed
/// chunk grid over each, and (under ZeRO-1) the part of each group this rank updates.</summary>
public abstract class FlatBlockOptimizer : BlockOptimizer
{
    private protected FlatBlockOptimizer(
        IEnumerable<(string Name, TorchSharp.Modules.Parameter Parameter)> parameters,
        AdamSettings settings,
        BlockRules? rules,
        DataParallel? parallel,
        Func<OptimizedParameter, bool>? orthogonalized = null
    )
        : base(parameters, settings, rules)
    {
        Groups = FlatGroup.Build(Parameters, orthogonalized);
        Owner = FlatGroup.Owners(Groups);
        Parallel = parallel ?? DataParallel.None;
        if (Parallel.ZeroStage is not (0 or 1))
            throw new ArgumentException($"ZeRO stage {Parallel.ZeroStage}: only 0 and 1 exist here");
    }

    private protected List<FlatGroup> Groups { get; }
    private protected Dictionary<OptimizedParameter, FlatGroup> Owner { get; }

    /// <summary>How the state is spread over the processes of the run.</summary>
    public DataParallel Parallel { get; }
    ProcessGroup Group => Parallel.Group;

    /// <summary>True when this rank keeps the state of a part of each group only (ZeRO-1 at world > 1).</summary>
    public bool Sharded => Parallel.ZeroStage == 1 && Group.WorldSize > 1;

    /// <summary>Per group: its grid, which rank owns each chunk, and the element and v-block counts per rank.</summary>
    private protected sealed record Layout(
        List<GridChunk> Grid,
        int[] OwnerOf,
        long[] Counts,
        long[] VCounts,
        long OwnStart,
        long OwnVStart
    )
    {
        public IEnumerable<GridChunk> Own(int rank, bool sharded) =>
            Grid.Where((_, i) => !sharded || OwnerOf[i] == rank);

        public long Total => Counts.Sum();
        public long VTotal => VCounts.Sum();
    }

    private protected Dictionary<FlatGroup, Layout> Layouts { get; } = [];

    /// <summary>Lays the grid over every group from its v-block segments and splits the chunks of all groups, in
    /// order, into contiguous runs of about equal size, one per rank. Subclasses call it before making state.</summary>
    private protected void Distribute(Func<FlatGroup, IEnumerable<(long Offset, long Blocks, long BlockSize)>> segments)
    {
        segmentsOf = segments;
        var world = Group.WorldSize;
        long ChunkOf(FlatGroup g) =>
            (Parallel.GridDevice ?? g.Params.device).type == DeviceType.CUDA ? Chunking.DefaultCudaChunk
            : cpuChunk > 0 ? cpuChunk
            : long.MaxValue;
        var grids = Groups.Select(g => Chunking.Grid(segments(g), ChunkOf(g))).ToList();
        var total = Math.Max(1, grids.Sum(grid => grid.Sum(c => c.Length)));
        long before = 0;
        for (var i = 0; i < Groups.Count; i++)
        {
            var grid = grids[i];
            var owners = new int[grid.Count];
            var (counts, vcounts) = (new long[world], new long[world]);
            for (var c = 0; c < grid.Count; c++)
            {
                owners[c] = (int)Math.Min(world - 1, (before + grid[c].Length / 2) * world / total);
                counts[owners[c]] += grid[c].Length;
                vcounts[owners[c]] += grid[c].Blocks;
                before += grid[c].Length;
            }
            var rank = Group.Rank;
            Layouts[Groups[i]] = new Layout(
                grid,
                owners,
                counts,
                vcounts,
                counts.Take(rank).Sum(),
                vcounts.Take(rank).Sum()
            );
        }
    }

    Func<FlatGroup, IEnumerable<(long Offset, long Blocks, long BlockSize)>>? segmentsOf;
    long cpuChunk = Chunking.DefaultCpuChunk;

    /// <summary>Elements per chunk of the CPU grid (0: whole buffers); a tuning knob of an unsharded optimizer,
    /// set before its first step.</summary>
    internal long CpuChunk
    {
        get => cpuChunk;
        set
        {
            if (Sharded)
                throw new InvalidOperationException(
                    "the chunk grid of a sharded optimizer is fixed (its shards follow it)"
                );
            cpuChunk = value;
            Layouts.Clear();
            Distribute(segmentsOf!);
        }
    }

    /// <summary>This rank's part of a group: (first element, elements) and (first v-block, v-blocks).</summary>
    private protected (long Start, long Length, long VStart, long VLength) Part(FlatGroup g)
    {
        var layout = Layouts[g];
        return Sharded
            ? (layout.OwnStart, layout.Counts[Group.Rank], layout.OwnVStart, layout.VCounts[Group.Rank])
            : (0, layout.Total, 0, layout.VTotal);
    }

    /// <summary>Optimizer state bytes each rank keeps: its parts of every group's buffers under ZeRO-1, all of them
    /// otherwise.</summary>
    public IReadOnlyList<long> StateBytesPerRank() =>
        Enumerable
            .Range(0, Group.WorldSize)
            .Select(r =>
                Groups.Sum(g => StateBuffers(g).Sum(b => 4 * (Sharded ? CountsOf(g, b)[r] : CountsOf(g, b).Sum())))
            )
            .ToList();

    /// <summary>The chunks of a group this rank updates.</summary>
    private protected IEnumerable<GridChunk> OwnChunks(FlatGroup g) => Layouts[g].Own(Group.Rank, Sharded);

    /// <summary>A chunk's parameters and gradients (views of the group's flat buffers).</summary>
    private protected static (Tensor Params, Tensor Grads) At(FlatGroup g, GridChunk c) =>
        (g.Params.narrow(0, c.Start, c.Length), g.Grads.narrow(0, c.Start, c.Length));

    /// <summary>A chunk's elements of a per-element state buffer, which holds this rank's part of the group.</summary>
    private protected Tensor Local(Tensor buffer, FlatGroup g, GridChunk c) =>
        buffer.narrow(0, c.Start - Part(g).Start, c.Length);

    /// <inheritdoc/>
    public override void ZeroGrad()
    {
        foreach (var g in Groups)
            g.Grads.zero_();
    }

    Tensor? scratch;

    /// <inheritdoc/>
    public override void ReduceGradients()
    {
        if (Group == ProcessGroup.Single)
            return;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var noGrad = no_grad();
        if (!Sharded)
        {
            var bucket = Math.Max(1, Parallel.BucketBytes / 4);
            foreach (var g in Groups)
                for (long start = 0; start < g.Length; start += bucket)
                    Group.AllReduce(g.Grads.narrow(0, start, Math.Min(bucket, g.Length - start)));
        }
        else
        {
            foreach (var g in Groups)
            {
                var (start, length, _, _) = Part(g);
                if (scratch is null || scratch.numel() < length)
                {
                    scratch?.Dispose();
                    scratch = empty(Groups.Max(x => Part(x).Length), dtype: ScalarType.Float32, device: g.Grads.device)
                        .DetachFromDisposeScope();
                }
                var piece = scratch.narrow(0, 0, length);
                Group.ReduceScatter(g.Grads, piece, Layouts[g].Counts);
                g.Grads.narrow(0, start, length).copy_(piece);
            }
        }
        CollectiveMilliseconds += clock.Elapsed.TotalMilliseconds;
    }

    private protected override void AfterUpdate()
    {
        if (!Sharded)
            return;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        foreach (var g in Groups)
            Group.AllGather(g.Params, Layouts[g].Counts);
        CollectiveMilliseconds += clock.Elapsed.TotalMilliseconds;
    }

    /// <summary>Squared norms as float64 sums over the grid's chunks, added in chunk order: the same numbers for
    /// one process, ZeRO-0 and ZeRO-1 at any world size (a sharded rank sums its chunks, the others' are zeros in
    /// one small all-reduce).</summary>
    public override IReadOnlyDictionary<Block, double> GradientSquaredNorms()
    {
        using var scope = NewDisposeScope();
        return NormsAnd(zeros(0, dtype: ScalarType.Float64, device: Groups[0].Grads.device)).Norms;
    }

    /// <summary>In a data-parallel run each chunk's sum is taken by the rank that owns it (the others add exact
    /// zeros), under ZeRO-0 too, so one all-reduce of [extra, chunk sums] serves both.</summary>
    internal override (IReadOnlyDictionary<Block, double> Norms, double[] Extra) NormsAnd(Tensor extra)
    {
        using var scope = Temporaries.Open();
        var sums = new List<Tensor> { extra.to(ScalarType.Float64).reshape(-1) };
        var index = new List<(Block Block, int Count)>();
        var split = Group != ProcessGroup.Single;
        foreach (var g in Groups)
        {
            var layout = Layouts[g];
            for (var c = 0; c < layout.Grid.Count; c++)
            {
                var chunk = layout.Grid[c];
                // Each chunk's square is freed before the next is made: one chunk of temporaries at a time.
                using var inner = Temporaries.Open();
                sums.Add(
                    (
                        split && layout.OwnerOf[c] != Group.Rank
                            ? zeros(1, dtype: ScalarType.Float64, device: g.Grads.device)
                            : g
                                .Grads.narrow(0, chunk.Start, chunk.Length)
                                .square()
                                .sum(type: ScalarType.Float64)
                                .reshape(1)
                    ).MoveToOuterDisposeScope()
                );
            }
            index.Add((g.Block, layout.Grid.Count));
        }
        var all = cat(sums, 0).contiguous();
        if (split)
            Group.AllReduce(all);
        var values = HostReads.Read(all);
        var result = new Dictionary<Block, double>();
        var at = (int)extra.numel();
        foreach (var (block, count) in index)
        {
            var total = result.GetValueOrDefault(block);
            for (var c = 0; c < count; c++)
                total += values[at++];
            result[block] = total;
        }
        return (result, values[..(int)extra.numel()]);
    }

    /// <summary>Chunk by chunk over each group's whole local buffer (under ZeRO-1 too: before the reduce-scatter every
    /// rank holds all of its own gradient), one chunk of temporaries at a time.</summary>
    internal override Tensor LocalSquaredNorms(IReadOnlyList<Block> order)
    {
        var sums = order.ToDictionary(
            block => block,
            _ => zeros(1, dtype: ScalarType.Float64, device: Groups[0].Grads.device)
        );
        foreach (var g in Groups)
        {
            if (!sums.TryGetValue(g.Block, out var sum))
                continue;
            foreach (var chunk in Layouts[g].Grid)
            {
                using var inner = Temporaries.Open();
                sum.add_(g.Grads.narrow(0, chunk.Start, chunk.Length).square().sum(type: ScalarType.Float64));
            }
        }
        return cat(order.Select(block => sums[block]).ToArray(), 0);
    }

    /// <summary>The gradients this rank updates (its parts under ZeRO-1), each with its block.</summary>
    protected override IEnumerable<(Block Block, Tensor Gradient)> GradientBuffers() =>
        Groups.Select(g => (g.Block, Sharded ? g.Grads.narrow(0, Part(g).Start, Part(g).Length) : g.Grads));

    /// <summary>One kind of state per group: its local tensor (this rank's part), indexed by element or by v-block,
    /// and the slice that belongs to one member in a full-group tensor.</summary>
    private protected sealed record StateBuffer(
        string Kind,
        Tensor Local,
        bool PerVBlock,
        Func<Tensor, OptimizedParameter, Tensor> Slice
    );

    private protected abstract IEnumerable<StateBuffer> StateBuffers(FlatGroup g);

    /// <summary>A state buffer's elements per rank: v-blocks or elements of the group.</summary>
    long[] CountsOf(FlatGroup g, StateBuffer buffer) => buffer.PerVBlock ? Layouts[g].VCounts : Layouts[g].Counts;

    /// <summary>A zero whole-group tensor of one state buffer and the view of it that this rank's part fills.</summary>
    (Tensor Full, Tensor Mine) WholeOf(FlatGroup g, StateBuffer buffer)
    {
        var (start, length, vstart, vlength) = Part(g);
        var full = zeros(CountsOf(g, buffer).Sum(), dtype: ScalarType.Float32, device: buffer.Local.device);
        return (full, full.narrow(0, buffer.PerVBlock ? vstart : start, buffer.PerVBlock ? vlength : length));
    }

    /// <summary>A whole-group tensor of one state buffer (gathered from every rank when sharded).</summary>
    Tensor Full(FlatGroup g, StateBuffer buffer)
    {
        var (full, mine) = WholeOf(g, buffer);
        mine.copy_(buffer.Local);
        if (Sharded)
            Group.AllGather(full, CountsOf(g, buffer));
        return full;
    }

    /// <inheritdoc/>
    public override Dictionary<string, Tensor> StateDict()
    {
        var state = new Dictionary<string, Tensor> { ["step"] = tensor(StepCount) };
        using var noGrad = no_grad();
        // One buffer gathered at a time: a sharded run never holds more than one whole buffer on its device.
        foreach (var g in Groups)
        foreach (var buffer in StateBuffers(g))
        {
            using var scope = NewDisposeScope();
            var full = Full(g, buffer);
            foreach (var p in g.Members)
                state[$"{buffer.Kind}/{p.Name}"] = buffer
                    .Slice(full, p)
                    .detach()
                    .cpu()
                    .contiguous()
                    .MoveToOuterDisposeScope();
        }
        return state;
    }

    /// <inheritdoc/>
    public override void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, string source = "optimizer state")
    {
        using var noGrad = no_grad();
        if (!state.TryGetValue("step", out var step))
            throw new InvalidDataException($"{source}: no 'step' entry");
        foreach (var g in Groups)
        foreach (var buffer in StateBuffers(g))
        {
            using var scope = NewDisposeScope();
            var (full, mine) = WholeOf(g, buffer);
            foreach (var p in g.Members)
            {
                var target = buffer.Slice(full, p);
                target.copy_(Entry(state, $"{buffer.Kind}/{p.Name}", target, source));
            }
            buffer.Local.copy_(mine);
        }
        StepCount = step.item<long>();
    }

    /// <summary>The bytes of this rank's state buffers, per block.</summary>
    public sealed override IReadOnlyDictionary<Block, long> StateBytes =>
        Groups
            .GroupBy(g => g.Block)
            .ToDictionary(b => b.Key, b => b.Sum(g => StateBuffers(g).Sum(s => 4 * s.Local.numel())));

    /// <inheritdoc/>
    public override void Dispose()
    {
        foreach (var g in Groups)
        {
            foreach (var buffer in StateBuffers(g))
                buffer.Local.Dispose();
            g.Dispose();
        }
        scratch?.Dispose();
        base.Dispose();
    }
}
