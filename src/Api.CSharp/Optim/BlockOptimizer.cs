using BlockwiseLR.Core;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace BlockwiseLR.Optim;

/// <summary>
/// Optimizers whose learning rate is set per block kind at every step (Blockwise LR). With one LR for every block
/// they are plain AdamW, Adam-mini, Lion and Muon. State is saved per parameter name (step, and exp_avg/NAME,
/// exp_avg_sq/NAME or momentum_buffer/NAME as the optimizer keeps them), independent of the in-memory layout.
/// </summary>
public abstract class BlockOptimizer : IDisposable
{
    /// <summary>An optimizer over <paramref name="parameters"/> (fp32 master weights; another dtype is an <see
    /// cref="ArgumentException"/>), each assigned a block by <paramref name="rules"/> (default the built-in
    /// names).</summary>
    protected BlockOptimizer(
        IEnumerable<(string Name, Parameter Parameter)> parameters,
        AdamSettings settings,
        BlockRules? rules
    )
    {
        Settings = settings;
        var list = parameters.ToList();
        var blocks = (rules ?? BlockRules.Default).WholeBlocks(
            list.Select(p => new ParameterShape(p.Name, p.Parameter.shape))
        );
        Parameters = list.Zip(blocks, (p, block) =>
                new OptimizedParameter(
                    p.Name,
                    p.Parameter,
                    block,
                    AdamMiniRules.Decays(settings.DecayPolicy, p.Name, p.Parameter.shape)
                )
            )
            .ToList();
        var devices = Parameters.Select(p => p.Tensor.device.ToString()).Distinct().ToList();
        if (devices.Count > 1)
            throw new ArgumentException(
                $"parameters are on several devices ({string.Join(", ", devices)}); move the model first"
            );
        if (Parameters.FirstOrDefault(p => p.Tensor.dtype != ScalarType.Float32) is { } wrong)
            throw new ArgumentException($"{wrong.Name} is {wrong.Tensor.dtype}; optimizers keep fp32 master weights");
    }

    /// <summary>The hyperparameters.</summary>
    public AdamSettings Settings { get; }

    /// <summary>The parameters optimized, with their blocks and whether they decay.</summary>
    public IReadOnlyList<OptimizedParameter> Parameters { get; }

    /// <summary>Completed steps (PyTorch's `step` state; bias corrections use StepCount after the increment).</summary>
    public long StepCount { get; protected set; }

    /// <summary>The block kinds this optimizer holds parameters of.</summary>
    public IReadOnlyList<Block> Blocks => Parameters.Select(p => p.Block).Distinct().Order().ToList();

    /// <summary>One update with the learning rate of each block.</summary>
    public void Step(Func<Block, double> learningRate)
    {
        using var scope = Temporaries.Open();
        using var noGrad = no_grad();
        StepCount++;
        Update(learningRate);
        AfterUpdate();
    }

    /// <summary>After each update (a sharded optimizer gathers the parameters every rank updated).</summary>
    private protected virtual void AfterUpdate() { }

    /// <summary>Sums the gradients over the processes of a data-parallel run (nothing in a world of one); call it
    /// after the last backward of a step and before <see cref="GradientSquaredNorms"/>, clipping and the
    /// step.</summary>
    public virtual void ReduceGradients() { }

    /// <summary>Milliseconds spent in collectives (gradient reduction, parameter gathering) since the optimizer was
    /// made.</summary>
    public double CollectiveMilliseconds { get; private protected set; }

    /// <summary>One update with each block's LR from the schedule at step <see cref="StepCount"/>.</summary>
    public void Step(BlockSchedule schedule)
    {
        var t = (int)StepCount;
        Step(block => schedule.LrAt(block, t));
    }

    /// <summary>One update of every parameter from its gradient, at the learning rate <paramref name="learningRate"/>
    /// gives each block.</summary>
    protected abstract void Update(Func<Block, double> learningRate);

    /// <summary>Adam's bias corrections at the current step: (1 - b1^t, sqrt(1 - b2^t)).</summary>
    protected (double First, double SecondSqrt) BiasCorrections() =>
        (1 - Math.Pow(Settings.Beta1, StepCount), Math.Sqrt(1 - Math.Pow(Settings.Beta2, StepCount)));

    /// <summary>Sets every gradient to zero in place (gradients stay allocated; autograd accumulates into
    /// them).</summary>
    public abstract void ZeroGrad();

    /// <summary>The squared L2 norm of the gradients of each block.</summary>
    public virtual IReadOnlyDictionary<Block, double> GradientSquaredNorms()
    {
        using var scope = NewDisposeScope();
        var sums = GradientBuffers()
            .GroupBy(g => g.Block)
            .Select(g => (g.Key, Sum: g.Select(x => x.Gradient.square().sum()).Aggregate((a, b) => a + b)))
            .ToList();
        var values = HostReads.Read(stack(sums.Select(s => s.Sum.to(ScalarType.Float64)).ToArray()));
        return sums.Select((s, i) => (s.Key, values[i])).ToDictionary(x => x.Key, x => x.Item2);
    }

    /// <summary>The squared norms per block and the values of <paramref name="extra"/> (a float64 vector on the
    /// device, summed over the processes of a data-parallel run, e.g. the loss), fetched together: the step's one
    /// read of tensor data on the host.</summary>
    internal virtual (IReadOnlyDictionary<Block, double> Norms, double[] Extra) NormsAnd(Tensor extra) =>
        (GradientSquaredNorms(), HostReads.Read(extra));

    /// <summary>The squared norm of this process's own gradient buffers per block, in <paramref name="order"/>, as a
    /// float64 tensor left on the device (nothing is read): before the gradients are reduced, e.g. after the first
    /// micro-batch, for the gradient-noise scale of auto ratios.</summary>
    internal virtual Tensor LocalSquaredNorms(IReadOnlyList<Block> order)
    {
        var sums = order
            .Select(block =>
            {
                var sum = zeros(1, dtype: ScalarType.Float64, device: Parameters[0].Tensor.device);
                foreach (var p in Parameters.Where(p => p.Block == block && p.Tensor.grad is not null))
                    sum.add_(p.Tensor.grad!.square().sum(type: ScalarType.Float64));
                return sum;
            })
            .ToArray();
        return cat(sums, 0);
    }

    /// <summary>Multiplies every gradient by <paramref name="factor"/> (global-norm clipping).</summary>
    public void ScaleGradients(double factor)
    {
        using var scope = Temporaries.Open();
        using var noGrad = no_grad();
        foreach (var (_, gradient) in GradientBuffers())
            gradient.mul_(factor);
    }

    /// <summary>The gradient tensors, each with its block (flat buffers where the optimizer has them).</summary>
    protected abstract IEnumerable<(Block Block, Tensor Gradient)> GradientBuffers();

    /// <summary>Optimizer state bytes per block kind.</summary>
    public abstract IReadOnlyDictionary<Block, long> StateBytes { get; }

    /// <summary>(first moment, second moment) of one parameter, as views of the live state (optimizers that keep
    /// per-parameter state; the flat ones save through their own <see cref="StateDict"/>).</summary>
    protected virtual (Tensor ExpAvg, Tensor ExpAvgSq) Moments(OptimizedParameter parameter) =>
        throw new NotSupportedException($"{GetType().Name} keeps no per-parameter moments");

    /// <summary>The state under per-parameter names (step, exp_avg/NAME, exp_avg_sq/NAME), on the CPU, whatever the
    /// layout or sharding: a checkpoint written at any number of processes loads at any other. With sharded state
    /// every rank must call it (it gathers).</summary>
    public virtual Dictionary<string, Tensor> StateDict()
    {
        var state = new Dictionary<string, Tensor> { ["step"] = tensor(StepCount) };
        foreach (var p in Parameters)
        {
            var (m, v) = Moments(p);
            state[$"exp_avg/{p.Name}"] = m.detach().cpu().contiguous();
            state[$"exp_avg_sq/{p.Name}"] = v.detach().cpu().contiguous();
        }
        return state;
    }

    /// <summary>Restores state saved by <see cref="StateDict"/>; a missing entry or a shape that differs (another
    /// model or optimizer) is an <see cref="InvalidDataException"/> naming it.</summary>
    public virtual void LoadStateDict(IReadOnlyDictionary<string, Tensor> state, string source = "optimizer state")
    {
        using var noGrad = no_grad();
        if (!state.TryGetValue("step", out var step))
            throw new InvalidDataException($"{source}: no 'step' entry");
        foreach (var p in Parameters)
        {
            var (m, v) = Moments(p);
            foreach (var (key, target) in new[] { ($"exp_avg/{p.Name}", m), ($"exp_avg_sq/{p.Name}", v) })
                target.copy_(Entry(state, key, target, source));
        }
        StepCount = step.item<long>();
    }

    /// <summary>Writes the state as safetensors through a temporary file renamed into place.</summary>
    public void Save(string path)
    {
        using var scope = NewDisposeScope();
        Save(path, StateDict());
    }

    /// <summary>Writes state already taken with <see cref="StateDict"/> (rank 0 of a sharded run).</summary>
    internal static void Save(string path, Dictionary<string, Tensor> state)
    {
        var temp = path + $".tmp-{Environment.ProcessId}";
        Safetensors.SaveStateDict(temp, state);
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>Checks a saved entry against the shape and dtype of the tensor it loads into.</summary>
    private protected static Tensor Entry(
        IReadOnlyDictionary<string, Tensor> state,
        string key,
        Tensor target,
        string source
    )
    {
        var shape = target.shape;
        if (!state.TryGetValue(key, out var saved))
            throw new InvalidDataException($"{source}: no entry {key}; was it saved for another model?");
        if (!saved.shape.SequenceEqual(shape))
            throw new InvalidDataException(
                $"{source}: {key} is ({string.Join(", ", saved.shape)}), expected ({string.Join(", ", shape)}); was "
                    + $"it saved by another optimizer?"
            );
        SafetensorsHeader.RequireDType(source, key, saved, target.dtype);
        return saved;
    }

    /// <summary>Loads the state saved at <paramref name="path"/> (optimizer.safetensors); a tensor of another shape or
    /// dtype is an <see cref="InvalidDataException"/>.</summary>
    public void Load(string path)
    {
        using var scope = NewDisposeScope();
        LoadStateDict(SafetensorsHeader.LoadTensors(path), path);
    }

    /// <summary>Frees the optimizer state.</summary>
    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>Builds the optimizer of a run: AdamW-family kinds give <see cref="BlockwiseAdamW"/>, Adam-mini
    /// kinds <see cref="AdamMini"/>, Lion kinds <see cref="BlockwiseLion"/>, Muon kinds <see cref="Muon"/> (all
    /// flat-buffer; Lion and Muon read the betas and weight decay of <paramref name="settings"/> as given, so pass
    /// <see cref="AdamSettings.Of"/> for a family's recipe). Plain and blockwise kinds build the same optimizer: the LR
    /// per block comes from the schedule given to <see cref="Step(BlockSchedule)"/>. <paramref name="reference"/>
    /// picks the plain per-parameter implementations the fast ones are tested against.</summary>
    public static BlockOptimizer Create(
        OptimizerKind kind,
        IEnumerable<(string Name, Parameter Parameter)> parameters,
        AdamSettings settings,
        AttentionShape? attention = null,
        BlockRules? rules = null,
        bool reference = false,
        DataParallel? parallel = null
    )
    {
        if (reference && parallel is { Group.WorldSize: > 1 })
            throw new ArgumentException("the reference optimizers train in one process");
        var family = OptimizerKinds.Family(kind);
        if (family is OptimizerFamily.Lion or OptimizerFamily.Muon)
        {
            if (reference)
                throw new ArgumentException($"{OptionNames.Format(kind)} has no separate reference implementation");
            return family == OptimizerFamily.Lion
                ? new BlockwiseLion(parameters, settings, rules, parallel)
                : new Muon(parameters, settings, rules, parallel);
        }
        if (family == OptimizerFamily.AdamW)
            return reference
                ? new ReferenceAdamW(parameters, settings, rules)
                : new BlockwiseAdamW(parameters, settings, rules, parallel);
        var shape = attention
            ?? throw new ArgumentException(
                "Adam-mini needs the attention shape (width, heads, kv-heads) to cut Q and K into heads"
            );
        return reference
            ? new ReferenceAdamMini(parameters, settings, shape, rules)
            : new AdamMini(parameters, settings, shape, rules, parallel);
    }
}
