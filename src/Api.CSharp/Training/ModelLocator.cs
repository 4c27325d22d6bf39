using BlockwiseLR.Models;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

/// <summary>Finds a model: a Hugging Face folder or checkpoint (config.json + model.safetensors), or a run folder
/// (its latest checkpoint).</summary>
public static class ModelLocator
{
    public static string Resolve(string path)
    {
        if (File.Exists(Path.Combine(path, "config.json")))
            return path;
        var latest = Path.Combine(Checkpoints.Folder(path), Checkpoints.LatestFile);
        if (File.Exists(latest))
            return Path.Combine(Checkpoints.Folder(path), File.ReadAllText(latest).Trim());
        throw new ArgumentException(
            $"{path}: not a model (no config.json) and not a run folder (no checkpoints/latest)"
        );
    }

    public static LanguageModel Load(string path, Device? device = null) => HfFormat.Load(Resolve(path), device);
}
