using BlockwiseLR.Core;
using BlockwiseLR.Models;
using BlockwiseLR.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Reporting;

/// <summary>One checkpoint's measurement.</summary>
public sealed record SharpnessRow(
    int Step,
    Block Block,
    Estimate Proxy,
    Estimate? Hutchinson,
    Estimate? Preconditioned = null
);

/// <summary>`blr sharpness`: every checkpoint of a run (or the ones asked for), measured on the first val
/// windows.</summary>
public static class SharpnessReport
{
    /// <summary>The measured order of the paper's five blocks at one step, flattest first, by the proxy or by
    /// Hutchinson's estimate, and whether it is the paper's S(Emb) &lt; S(QK) &lt; S(FFN) &lt; S(VO) &lt;
    /// S(Norm).</summary>
    public static (IReadOnlyList<Block> FlattestFirst, bool MatchesPaper) Ordering(
        IEnumerable<SharpnessRow> rowsOfOneStep,
        bool hutchinson
    )
    {
        var measured = rowsOfOneStep
            .Where(r => !hutchinson || r.Hutchinson is not null)
            .Select(r => KeyValuePair.Create(r.Block.ToCore(), hutchinson ? r.Hutchinson!.Mean : r.Proxy.Mean));
        var (order, matchesPaper) = SharpnessRules.Order(measured);
        return (order.Select(k => k.ToCSharp()).ToList(), matchesPaper);
    }

    public static (IReadOnlyList<SharpnessRow> Rows, string Csv, string Png) Measure(
        string run,
        string data,
        IReadOnlyList<int>? steps,
        int batches,
        int batchSize,
        int seqLen,
        bool hutchinson,
        ulong seed,
        Action<string>? starting = null,
        ComputeDevice? device = null,
        bool preconditioned = false
    )
    {
        // Before anything is read or written: zero batches would replace the run's sharpness.csv and .png with
        // nothing.
        foreach (var (name, value) in new[] { ("Batches", batches), ("BatchSize", batchSize), ("SeqLen", seqLen) })
            if (value < 1)
                throw new InvalidOptionException(
                    name,
                    value.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    "must be >= 1"
                );
        var checkpoints = CheckpointsOf(run, steps);
        var context = HfFormat.ReadConfig(checkpoints[0].Dir).Context;
        if (seqLen > context)
            throw new InvalidOptionException(
                "SeqLen",
                seqLen.ToString(System.Globalization.CultureInfo.InvariantCulture),
                $"must be in 1..{context} (the model's context)"
            );
        if (preconditioned)
            RefuseWithoutSecondMoment(run, checkpoints[0].Dir);
        foreach (var (_, dir) in checkpoints)
            Data.TextTokenizers.RequireModelTokenizer(dir, data);
        var on = (device ?? ComputeDevice.Cpu).Use();
        using var val = Data.TokenDataset.Open(data, "val");
        var rows = new List<SharpnessRow>();
        foreach (var (step, dir) in checkpoints)
        {
            starting?.Invoke($"step {step}");
            using var scope = NewDisposeScope();
            using var model = HfFormat.Load(dir, on);
            var windows = Data.Windows.Validation(val, seqLen, batchSize, (long)batches * batchSize, on).ToList();
            var preconditioners = preconditioned ? PreconditionersOf(dir, model) : null;
            var (proxy, hessian, adam) = SharpnessEstimator.Measure(model, windows, hutchinson, seed, preconditioners);
            rows.AddRange(
                proxy
                    .OrderBy(kv => kv.Key)
                    .Select(kv => new SharpnessRow(step, kv.Key, kv.Value, hessian?[kv.Key], adam?[kv.Key]))
            );
        }
        var csv = Path.Combine(run, "sharpness.csv");
        WriteCsv(csv, rows);
        // log10 sharpness per block against step (the Hutchinson estimate where measured, else the proxy).
        var png = Plots.Save(
            Path.Combine(run, "sharpness.png"),
            "log10 sharpness per block (Hutchinson where measured, else the proxy)",
            rows.GroupBy(r => r.Block)
                .Select(g => new Plots.Curve(
                    g.Key.ToString(),
                    g.Select(r => (double)r.Step).ToArray(),
                    g.Select(r => Math.Log10(Math.Max(1e-30, (r.Hutchinson ?? r.Proxy).Mean))).ToArray()
                ))
        );
        return (rows, csv, png);
    }

    /// <summary>The run's checkpoints (at <paramref name="steps"/> when given), by step.</summary>
    static List<(int Step, string Dir)> CheckpointsOf(string run, IReadOnlyList<int>? steps)
    {
        var folder = Checkpoints.Folder(run);
        var checkpoints = (Directory.Exists(folder) ? Directory.GetDirectories(folder, "step_*") : [])
            .Select(d =>
                (
                    Step: int.Parse(
                        Path.GetFileName(d)["step_".Length..],
                        System.Globalization.CultureInfo.InvariantCulture
                    ),
                    Dir: d
                )
            )
            .Where(c => steps is null || steps.Contains(c.Step))
            .OrderBy(c => c.Step)
            .ToList();
        if (checkpoints.Count == 0)
            throw new ArgumentException(
                $"{run}: no checkpoints{(steps is null ? "" : " at the steps asked for")}; train with "
                    + $"--checkpoint-every N --keep-checkpoints K to keep several"
            );
        return checkpoints;
    }

    /// <summary>Lion keeps no second moment, and Muon none for its matrices: their runs have no Adam
    /// preconditioner.</summary>
    static void RefuseWithoutSecondMoment(string run, string dir)
    {
        var kind = Checkpoints.ReadState(dir, HfFormat.ReadConfig(dir)).Options.Optimizer.Kind;
        if (OptimizerKinds.Family(kind) is OptimizerFamily.Lion or OptimizerFamily.Muon)
            throw new ArgumentException(
                $"{run} was trained with {OptionNames.Format(kind)}, which keeps no Adam second moment to precondition "
                    + "with; leave out --preconditioned (the proxy and Hutchinson's estimate need none)"
            );
    }

    /// <summary>Adam's v from the checkpoint's optimizer state, with the run's beta2 and eps.</summary>
    static IReadOnlyList<Tensor> PreconditionersOf(string dir, LanguageModel model)
    {
        var trainer = Checkpoints.ReadState(dir, model.Config);
        var state = SafetensorsHeader.LoadTensors(Path.Combine(dir, "optimizer.safetensors"));
        return SharpnessEstimator.Preconditioners(
            model.named_parameters().Select(p => (p.name, (Tensor)p.parameter)),
            state,
            trainer.Options.Optimizer.WithRecipe().Beta2!.Value,
            trainer.Options.Optimizer.Eps
        );
    }

    /// <summary>sharpness.csv: a row per step and block, invariant numbers, empty where not measured.</summary>
    static void WriteCsv(string csv, IReadOnlyList<SharpnessRow> rows) =>
        File.WriteAllLines(
            csv,
            rows.Select(r =>
                    FormattableString.Invariant(
                        $"{r.Step},{r.Block.Key()},{r.Proxy.Mean:R},{r.Proxy.StdErr:R},{r.Hutchinson?.Mean:R},"
                    )
                    + FormattableString.Invariant(
                        $"{r.Hutchinson?.StdErr:R},{r.Preconditioned?.Mean:R},{r.Preconditioned?.StdErr:R}"
                    )
                )
                .Prepend(
                    "step,block,proxy,proxy_stderr,hutchinson,hutchinson_stderr,preconditioned,preconditioned_stderr"
                )
        );
}
