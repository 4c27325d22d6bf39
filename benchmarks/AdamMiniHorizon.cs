using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;
using BlockwiseLR.Training;

namespace BlockwiseLR.Benchmarks;

/// <summary>
/// `--adam-mini-horizon [STEPS]`: does Blockwise Adam-mini lose to plain Adam-mini over long runs because our flat
/// Adam-mini drifts from the method, or because the paper's ratios are too much for this regime? Two questions, two
/// measurements, on gpt2-tiny (4 layers x 128, the shape of the held-out result) with the study's tokenizer:
/// (1) the flat optimizer against the plain per-parameter reference (<see cref="Optim.ReferenceAdamMini"/>,
/// docs/method.md section 6 written literally) through the whole trainer, step by step, plain and with the paper's
/// ratios; (2) at seeds 1-3, plain Adam-mini, the paper's ratios at the base LR and the paper's ratios at half the base
/// LR: if halving the LR turns a loss into a win, the ratios are past the stable step size here, not wrong in the
/// optimizer. Raw results to docs/study/adam-mini-horizon.json, the summary to docs/study/adam-mini-horizon.md.
/// </summary>
static class AdamMiniHorizon
{
    const double Lr = 1e-3;
    const int BatchSize = 16,
        SeqLen = 64;

    static JsonObject Train(
        string data,
        OptimizerKind optimizer,
        string ratios,
        double lr,
        ulong seed,
        bool reference,
        int steps
    )
    {
        var (entry, result) = Study.Record(
            new PretrainOptions
            {
                Model = new() { Name = "gpt2-tiny" },
                Data = new() { Path = data },
                Optimizer = new() { Kind = optimizer, Ratios = BlockRatios.Parse(ratios) },
                Schedule = new() { Lr = lr, WarmupSteps = steps / 10 },
                Training = new()
                {
                    Steps = steps,
                    BatchSize = BatchSize,
                    SeqLen = SeqLen,
                    Seed = seed,
                },
                Evaluation = new() { Every = 50, Windows = 32 },
                Debug = new() { ReferenceOptimizer = reference },
            },
            ratios
        );
        entry["reference"] = reference;
        entry["train_losses"] = new JsonArray(
            (result?.TrainLosses ?? []).Select(l => (JsonNode)Math.Round(l, 6)).ToArray()
        );
        Console.WriteLine(
            FormattableString.Invariant(
                $"  {OptionNames.Format(optimizer)} {ratios} lr {lr} seed {seed}{(reference ? " (reference)" : "")}: final val {Final(entry):F4} ({entry["seconds"]!.GetValue<double>():F0} s)"
            )
        );
        return entry;
    }

    static double Final(JsonNode run) => run["final"] is { } f ? f.GetValue<double>() : double.NaN;

    public static void Run(int steps, string data, string docs)
    {
        Console.WriteLine(
            $"Adam-mini over {steps} steps: gpt2-tiny, {BatchSize} x {SeqLen} tokens per step, base LR {Lr}"
        );
        var runs = new JsonArray();
        void Save() =>
            File.WriteAllText(
                Path.Combine(docs, "adam-mini-horizon.json"),
                new JsonObject
                {
                    ["steps"] = steps,
                    ["model"] = "gpt2-tiny",
                    ["batch_size"] = BatchSize,
                    ["seq_len"] = SeqLen,
                    ["lr"] = Lr,
                    ["code"] = Pretrainer.CodeVersion,
                    ["machine"] =
                        $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}",
                    ["runs"] = runs.DeepClone(),
                }.ToJsonString(new JsonSerializerOptions { WriteIndented = true })
            );
        JsonObject Add(JsonObject run)
        {
            runs.Add(run);
            Save();
            return run;
        }
        var text = new StringBuilder();
        text.AppendLine("# Blockwise Adam-mini over a long horizon: the optimizer or the ratios?");
        text.AppendLine();
        text.AppendLine(
            FormattableString.Invariant(
                $"Rebuilt by `dotnet benchmarks/bin/Release/net10.0/Benchmarks.dll --adam-mini-horizon {steps}` (raw results in `adam-mini-horizon.json`):"
            )
        );
        text.AppendLine(
            FormattableString.Invariant(
                $"gpt2-tiny (4 layers x 128), {BatchSize} x {SeqLen} tokens per step, {steps} steps ({steps / 10} warmup, cosine to LR/20), base LR {Lr},"
            )
        );
        text.AppendLine("the built-in corpus with the study's 4,000-piece SentencePiece BPE, val loss on 32 windows.");
        text.AppendLine();
        text.AppendLine("## 1. The flat Adam-mini against the per-parameter reference, through the whole trainer");
        text.AppendLine();
        text.AppendLine(
            "| ratios | first steps whose train losses agree within 1e-4 | largest train-loss gap, first 50 steps | final val: flat | reference |"
        );
        text.AppendLine("|---|---|---|---|---|");
        foreach (
            var (optimizer, ratios) in new[]
            {
                (OptimizerKind.AdamMini, "uniform"),
                (OptimizerKind.BlockwiseAdamMini, "paper"),
            }
        )
        {
            var flat = Add(Train(data, optimizer, ratios, Lr, 1, false, steps));
            var reference = Add(Train(data, optimizer, ratios, Lr, 1, true, steps));
            var (a, b) = (Losses(flat), Losses(reference));
            var agree = a.Zip(b).TakeWhile(p => Math.Abs(p.First - p.Second) <= 1e-4).Count();
            var early = a.Zip(b).Take(50).Max(p => Math.Abs(p.First - p.Second));
            text.AppendLine(
                FormattableString.Invariant(
                    $"| {ratios} | {agree} of {a.Count} | {early:E1} | {Final(flat):F4} | {Final(reference):F4} |"
                )
            );
        }
        text.AppendLine();
        text.AppendLine(
            "## 2. Plain Adam-mini, the paper's ratios, and the paper's ratios at half the base LR, seeds 1-3"
        );
        text.AppendLine();
        text.AppendLine("| arm | final val loss, mean (min..max) | seeds 1, 2, 3 |");
        text.AppendLine("|---|---|---|");
        foreach (
            var (label, optimizer, ratios, lr) in new[]
            {
                ("adam-mini", OptimizerKind.AdamMini, "uniform", Lr),
                ("adam-mini+paper", OptimizerKind.BlockwiseAdamMini, "paper", Lr),
                ("adam-mini+paper, LR/2", OptimizerKind.BlockwiseAdamMini, "paper", Lr / 2),
            }
        )
        {
            var finals = new List<double>();
            foreach (var seed in new ulong[] { 1, 2, 3 })
            {
                var done = runs.FirstOrDefault(r =>
                    r!["optimizer"]!.GetValue<string>() == OptionNames.Format(optimizer)
                    && r["ratios"]!.GetValue<string>() == ratios
                    && r["lr"]!.GetValue<double>() == lr
                    && r["seed"]!.GetValue<ulong>() == seed
                    && !r["reference"]!.GetValue<bool>()
                );
                done ??= Add(Train(data, optimizer, ratios, lr, seed, false, steps));
                finals.Add(Final(done));
            }
            text.AppendLine(
                FormattableString.Invariant(
                    $"| {label} | {finals.Average():F3} ({finals.Min():F3}..{finals.Max():F3}) | {string.Join(", ", finals.Select(f => f.ToString("F4", CultureInfo.InvariantCulture)))} |"
                )
            );
        }
        File.WriteAllText(Path.Combine(docs, "adam-mini-horizon.md"), text.ToString());
        Console.WriteLine(text);
    }

    static List<double> Losses(JsonNode run) =>
        run["train_losses"]!.AsArray().Select(l => l!.GetValue<double>()).ToList();
}
