using System.Text.Json;
using System.Text.Json.Nodes;
using BlockwiseLR.Core;

namespace BlockwiseLR.Benchmarks;

/// <summary>
/// The raw results of one part of a study (a cell of `--study`, a point of `--sweep`): a JSON file of its setup and
/// its runs, saved after every run, so a part stopped half-way resumes from it. Runs already in the file for the
/// same setup are reused by key (optimizer, ratios as named, LR, seed); a file of another setup is moved aside, not
/// overwritten.
/// </summary>
sealed class ResultFile
{
    readonly string file;
    readonly JsonObject header;
    readonly Dictionary<string, JsonObject> done = [];
    readonly List<JsonObject> runs = [];

    /// <param name="file">the JSON file</param>
    /// <param name="header">what identifies the part beside its setup (e.g. "cell": name)</param>
    /// <param name="setup">what every run of the part shares; a file with another setup is moved aside</param>
    public ResultFile(string file, JsonObject header, JsonObject setup)
    {
        this.file = file;
        this.header = header;
        header["setup"] = setup;
        if (!File.Exists(file) || JsonNode.Parse(File.ReadAllText(file)) is not { } old)
            return;
        if (!JsonNode.DeepEquals(old["setup"], setup))
        {
            var aside = $"{file}.{DateTime.UtcNow:yyyyMMddHHmmss}.other-setup";
            File.Move(file, aside);
            Console.WriteLine($"  {file} held another setup: moved to {aside}");
            return;
        }
        foreach (var r in old["runs"]!.AsArray())
            done[KeyOf(r!)] = r!.AsObject();
    }

    /// <summary>The parts a command names, in the order given (none: all of them); an unknown name is refused,
    /// listing the known ones.</summary>
    public static IReadOnlyList<T> Chosen<T>(
        IReadOnlyList<string> names,
        IReadOnlyList<T> all,
        Func<T, string> nameOf,
        string what
    ) =>
        names.Count == 0
            ? all
            : names
                .Select(n =>
                    all.FirstOrDefault(p => nameOf(p) == n)
                    ?? throw new ArgumentException(
                        $"unknown {what} {n} (known: {string.Join(", ", all.Select(nameOf))}, or report)"
                    )
                )
                .ToList();

    /// <summary>The runs of a saved part (its JSON) with this optimizer (as named), ratios (as named) and LR, by
    /// seed.</summary>
    public static List<JsonNode> RunsOf(JsonNode part, string optimizer, string ratios, double lr) =>
        part["runs"]!
            .AsArray()
            .Select(r => r!)
            .Where(r =>
                r["optimizer"]!.GetValue<string>() == optimizer
                && r["ratios"]!.GetValue<string>() == ratios
                && r["lr"]!.GetValue<double>() == lr
            )
            .OrderBy(r => r["seed"]!.GetValue<ulong>())
            .ToList();

    /// <summary>The median (the mean of the middle two for an even count; NaN for none).</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count == 0 ? double.NaN
            : sorted.Count % 2 == 1 ? sorted[sorted.Count / 2]
            : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    public static string Key(OptimizerKind optimizer, string ratios, double lr, ulong seed) =>
        FormattableString.Invariant($"{OptionNames.Format(optimizer)}/{ratios}/{lr}/{seed}");

    static string KeyOf(JsonNode r) =>
        Key(
            OptionNames.Parse<OptimizerKind>(r["optimizer"]!.GetValue<string>()),
            r["ratios"]!.GetValue<string>(),
            r["lr"]!.GetValue<double>(),
            r["seed"]!.GetValue<ulong>()
        );

    /// <summary>The run of this key: from the file, or trained now by <paramref name="train"/> and saved.</summary>
    public JsonObject Get(
        OptimizerKind optimizer,
        string ratios,
        double lr,
        ulong seed,
        double? baseline,
        Func<JsonObject> train
    )
    {
        var key = Key(optimizer, ratios, lr, seed);
        if (!done.TryGetValue(key, out var r))
            done[key] = r = train();
        if (!runs.Contains(r))
            runs.Add(r);
        Save(baseline, false);
        return r;
    }

    /// <summary>Writes the file atomically: the header, the baseline LR, whether the part is complete, the machine
    /// and the runs so far.</summary>
    public void Save(double? baseline, bool complete)
    {
        var json = (JsonObject)header.DeepClone();
        json["baseline_lr"] = baseline;
        json["complete"] = complete;
        json["machine"] =
            $"{Environment.ProcessorCount} cores, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}";
        json["runs"] = new JsonArray(runs.Select(r => (JsonNode)r.DeepClone()).ToArray());
        var temporary = file + ".tmp";
        File.WriteAllText(temporary, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        File.Move(temporary, file, true);
    }
}
