using System.Text.Json;
using BlockwiseLR.Core;
using BlockwiseLR.Models;
using BlockwiseLR.Optim;

namespace BlockwiseLR.Training;

/// <summary>
/// Checkpoints: RUN/checkpoints/step_NNNNNNN/ holds config.json + model.safetensors (Hugging Face format; for a
/// model of your own, model.safetensors under its own parameter names and no config.json),
/// optimizer.safetensors and trainer.json. Each is written into a temporary folder that is renamed into
/// place only when complete, then RUN/checkpoints/latest is replaced (also by rename): a process killed at any
/// moment leaves the previous checkpoint intact and `latest` pointing at a complete one. The last K are kept.
/// </summary>
public static class Checkpoints
{
    /// <summary>The file in RUN/checkpoints that names the latest complete checkpoint folder.</summary>
    public const string LatestFile = "latest";

    /// <summary>RUN/checkpoints of the run folder <paramref name="runDirectory"/>.</summary>
    internal static string Folder(string runDirectory) => Path.Combine(runDirectory, "checkpoints");

    /// <summary>Removes the temporary folders of checkpoint writes that did not finish (a killed process); returns
    /// them.</summary>
    internal static IReadOnlyList<string> RemoveStaleTemporaries(string runDirectory)
    {
        var folder = Folder(runDirectory);
        if (!Directory.Exists(folder))
            return [];
        var stale = Directory.GetDirectories(folder, ".tmp-*").Concat(Directory.GetFiles(folder, ".tmp-*")).ToList();
        foreach (var path in stale)
            if (Directory.Exists(path))
                Directory.Delete(path, true);
            else
                File.Delete(path);
        return stale;
    }

    /// <summary>Writes the checkpoint of <paramref name="state"/>'s step (model, optimizer state, trainer.json) into
    /// RUN/checkpoints, atomically, points <see cref="LatestFile"/> at it and removes all but the last <paramref
    /// name="keep"/>.</summary>
    /// <returns>The checkpoint's folder.</returns>
    internal static string Write(
        string runDirectory,
        TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> model,
        BlockOptimizer optimizer,
        TrainerState state,
        int keep
    ) => Write(runDirectory, model, optimizer.Save, state, keep);

    /// <summary>The folder the checkpoint of <paramref name="step"/> is written to.</summary>
    internal static string PathOf(string runDirectory, int step) =>
        Path.Combine(Folder(runDirectory), $"step_{step:D7}");

    /// <summary>Writes a checkpoint whose optimizer state <paramref name="saveOptimizer"/> writes to the path it is
    /// given.</summary>
    internal static string Write(
        string runDirectory,
        TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> model,
        Action<string> saveOptimizer,
        TrainerState state,
        int keep
    )
    {
        var folder = Folder(runDirectory);
        Directory.CreateDirectory(folder);
        var name = Path.GetFileName(PathOf(runDirectory, state.Step));
        var temp = Path.Combine(folder, $".tmp-{name}-{Environment.ProcessId}");
        if (Directory.Exists(temp))
            Directory.Delete(temp, true);
        Directory.CreateDirectory(temp);
        try
        {
            if (model is LanguageModel builtIn)
                HfFormat.Save(builtIn, temp);
            else
                SaveStateDict(model, Path.Combine(temp, "model.safetensors"));
            if (state.Tokenizer is { } tokenizer)
                Data.TextTokenizers.WriteForModel(temp, tokenizer, state.Options.Data.Path);
            FaultInjection.Hang("hang-during-checkpoint", state.Step);
            saveOptimizer(Path.Combine(temp, "optimizer.safetensors"));
            WriteDurably(Path.Combine(temp, "trainer.json"), JsonSerializer.Serialize(state, OptionsJson.Options));
        }
        catch
        {
            // A failed write (disk full, ...) leaves no partial checkpoint behind to keep the disk full.
            try
            {
                Directory.Delete(temp, true);
            }
            catch (IOException) { }
            throw;
        }
        var final = Path.Combine(folder, name);
        if (Directory.Exists(final))
            Directory.Delete(final, true);
        Directory.Move(temp, final);
        var latestTemp = Path.Combine(folder, $".tmp-latest-{Environment.ProcessId}");
        WriteDurably(latestTemp, name);
        File.Move(latestTemp, Path.Combine(folder, LatestFile), overwrite: true);
        foreach (var old in Directory.GetDirectories(folder, "step_*").Order(StringComparer.Ordinal).SkipLast(keep))
            Directory.Delete(old, true);
        FaultInjection.Hang("hang-after-checkpoint", state.Step);
        return final;
    }

    static void WriteDurably(string path, string text)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write);
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    /// <summary>The checkpoint folder named by --resume: "latest" (in the run folder) or a folder.</summary>
    internal static string Locate(string runDirectory, string resume)
    {
        if (resume != "latest")
            return File.Exists(Path.Combine(resume, "trainer.json"))
                ? resume
                : throw new InvalidOptionException(
                    "Checkpoint.Resume",
                    resume,
                    "not a checkpoint (no trainer.json); give a checkpoints/step_* folder or \"latest\""
                );
        var pointer = Path.Combine(Folder(runDirectory), LatestFile);
        if (!File.Exists(pointer))
            throw new InvalidOptionException(
                "Checkpoint.Resume",
                resume,
                RunFolder.StoppedBeforeFirstCheckpoint(runDirectory)
                    ? $"{runDirectory} has no checkpoint to resume (no {pointer}): its run stopped before its first "
                        + "checkpoint; run the same command without Checkpoint.Resume, which starts it again"
                    : $"{runDirectory} has no checkpoint to resume (no {pointer}); train it without Resume first"
            );
        return Path.Combine(Folder(runDirectory), File.ReadAllText(pointer).Trim());
    }

    /// <summary>Reads trainer.json and refuses a checkpoint of another model shape (null: a model of your own,
    /// checked by name and shape when its weights load), as a resume does. To read the state of any checkpoint
    /// without naming its model, use <see cref="TrainingRun.ReadState"/>.</summary>
    internal static TrainerState ReadState(string checkpoint, ModelConfig? expected)
    {
        var state = ReadStateOf(checkpoint);
        if (!Equals(state.Model, expected))
            throw new InvalidOptionException(
                "Checkpoint.Resume",
                checkpoint,
                $"holds another model ({Describe(state.Model)}), not the one asked for ({Describe(expected)}); "
                    + $"resume with the same model and overrides"
            );
        return state;
    }

    /// <summary>A checkpoint's trainer.json as it is, whatever model it holds
    /// (<see cref="TrainingRun.ReadState"/>).</summary>
    internal static TrainerState ReadStateOf(string checkpoint)
    {
        var path = Path.Combine(checkpoint, "trainer.json");
        TrainerState state;
        try
        {
            state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path), OptionsJson.Options)
                ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException(
                $"{path}: not a trainer state (line {e.LineNumber + 1}: "
                    + $"{(e is OptionValueException ? e.Message : "unexpected value")})"
            );
        }
        return state;
    }

    static string Describe(ModelConfig? config) =>
        config is null ? "a model of your own" : ModelConfigs.Describe(config);

    /// <summary>Loads weights and optimizer state into an existing model and optimizer.</summary>
    public static void Load(
        string checkpoint,
        TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> model,
        BlockOptimizer optimizer
    )
    {
        if (model is LanguageModel builtIn)
            LoadWeights(checkpoint, builtIn);
        else
            LoadStateDict(model, Path.Combine(checkpoint, "model.safetensors"));
        optimizer.Load(Path.Combine(checkpoint, "optimizer.safetensors"));
    }

    /// <summary>Copies the weights of a Hugging Face folder or checkpoint into a model of the same shape.</summary>
    public static void LoadWeights(
        string folder,
        TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> model
    )
    {
        using var loaded = HfFormat.Load(folder);
        using var noGrad = TorchSharp.torch.no_grad();
        var source = loaded.state_dict();
        foreach (var (name, parameter) in model.named_parameters())
            parameter.copy_(source[name]);
    }

    static void SaveStateDict(TorchSharp.torch.nn.Module model, string path)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        var state = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().contiguous());
        TorchSharp.PyBridge.Safetensors.SaveStateDict(path, state);
    }

    static void LoadStateDict(TorchSharp.torch.nn.Module model, string path)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var noGrad = TorchSharp.torch.no_grad();
        var saved = SafetensorsHeader.LoadTensors(path);
        foreach (var (name, tensor) in model.state_dict())
        {
            if (!saved.TryGetValue(name, out var value))
                throw new InvalidDataException($"{path}: no tensor {name}; was it saved from another model?");
            if (!value.shape.SequenceEqual(tensor.shape))
                throw new InvalidDataException(
                    $"{path}: {name} is ({string.Join(", ", value.shape)}), expected "
                        + $"({string.Join(", ", tensor.shape)})"
                );
            SafetensorsHeader.RequireDType(path, name, value, tensor.dtype);
            tensor.copy_(value);
        }
    }
}

/// <summary>What a run folder holds, and what may change when a run is resumed.</summary>
static class RunFolder
{
    static readonly string[] Files = ["options.json", "metrics.jsonl", "evals.csv", "result.json"];
    static readonly string[] Folders = ["checkpoints", "tensorboard"];

    internal static bool HoldsRun(string run) =>
        Files.Any(f => File.Exists(Path.Combine(run, f))) || Folders.Any(d => Directory.Exists(Path.Combine(run, d)));

    /// <summary>A run folder whose run stopped before its first checkpoint (killed, diverged, a failure): no
    /// checkpoint to resume (every run that ends, finished or interrupted, writes one) and no result.</summary>
    internal static bool StoppedBeforeFirstCheckpoint(string run) =>
        HoldsRun(run)
        && !File.Exists(Path.Combine(Checkpoints.Folder(run), Checkpoints.LatestFile))
        && !File.Exists(Path.Combine(run, "result.json"));

    /// <summary>Removes a run's own files (nothing else in the folder).</summary>
    internal static void Clear(string run)
    {
        foreach (var file in Files.Select(f => Path.Combine(run, f)).Where(File.Exists))
            File.Delete(file);
        foreach (var folder in Folders.Select(d => Path.Combine(run, d)).Where(Directory.Exists))
            Directory.Delete(folder, true);
    }

    /// <summary>Options a resumed run may change: where and how often it evaluates, logs and checkpoints, and what
    /// it runs on. Everything else decides the trajectory.</summary>
    static readonly HashSet<string> MayChange =
    [
        "evaluation.every",
        "evaluation.windows",
        "checkpoint.every",
        "checkpoint.keep",
        "run.out",
        "checkpoint.resume",
        "checkpoint.initFrom",
        "run.overwrite",
        "training.threads",
        "debug.peakTflops",
        "debug.sharpnessEvery",
        "debug.noiseScaleEvery", // a measured step splits its batch: the gradient changes only by float rounding
        "training.device",
        "debug.deterministic",
        "parallelism.zero",
        "parallelism.bucketMb",
    ];

    internal static void RefuseChangedTrajectory(
        PretrainOptions saved,
        PretrainOptions asked,
        string resume,
        string checkpoint
    )
    {
        // Unset betas and decay mean the family's recipe; earlier files wrote the numbers.
        // A plain optimizer's ratios are uniform whatever earlier versions wrote.
        saved = ResolvedOptions.WithEffectiveRatios(saved with { Optimizer = saved.Optimizer.WithRecipe() });
        asked = ResolvedOptions.WithEffectiveRatios(asked with { Optimizer = asked.Optimizer.WithRecipe() });
        var changed = OptionFields
            .All.Where(f => !f.IsAutoSetting && !MayChange.Contains(f.Path))
            .Select(f => (f.Name, Before: Value(f, saved), Now: Value(f, asked)))
            .Where(f => f.Before?.ToJsonString() != f.Now?.ToJsonString())
            .Select(f => $"{f.Name} {Text(f.Before)} -> {Text(f.Now)}")
            .ToList();
        if (changed.Count > 0)
            throw new InvalidOptionException(
                "Checkpoint.Resume",
                resume,
                $"{checkpoint} was trained with other options ({string.Join("; ", changed)}); resume with the "
                    + $"options it was "
                    + "trained with (its options.json) or start a new run"
            );
    }

    /// <summary>An option's value as options.json writes it (the data folder made absolute).</summary>
    static System.Text.Json.Nodes.JsonNode? Value(OptionField field, PretrainOptions options)
    {
        var value = field.Get(options);
        if (field.Path == "data.path" && value is string { Length: > 0 } path)
            value = Path.GetFullPath(path);
        return System.Text.Json.JsonSerializer.SerializeToNode(value, field.Property.PropertyType, OptionsJson.Options);
    }

    static string Text(System.Text.Json.Nodes.JsonNode? node) =>
        node is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<string>(out var s)
            ? s
            : node?.ToJsonString() ?? "null";
}
