using BlockwiseLR.Data;
using BlockwiseLR.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

/// <summary>Finds a model: a Hugging Face folder or checkpoint (config.json + model.safetensors), or a run folder
/// (its latest checkpoint).</summary>
public static class ModelLocator
{
    public static string Resolve(string path)
    {
        if (File.Exists(Path.Combine(path, "config.json"))) return path;
        var latest = Path.Combine(Checkpoints.Folder(path), Checkpoints.LatestFile);
        if (File.Exists(latest)) return Path.Combine(Checkpoints.Folder(path), File.ReadAllText(latest).Trim());
        throw new ArgumentException($"{path}: not a model (no config.json) and not a run folder (no checkpoints/latest)");
    }

    public static LanguageModel Load(string path, Device? device = null) => HfFormat.Load(Resolve(path), device);
}

/// <summary>Loss and perplexity of a model on token windows.</summary>
public sealed record EvalResult(string Model, double Loss, double Perplexity, long Windows, long Tokens);

public static class Evaluation
{
    /// <summary>Mean next-token loss over the first <paramref name="maxWindows"/> non-overlapping windows of
    /// seq_len + 1 tokens: of the val split of a prepared dataset, or of a text file tokenized with the model's tokenizer (its blr-tokenizer.json, else GPT-2's).</summary>
    public static EvalResult Run(string model, string? data, string? textFile, int seqLen, int batchSize, long maxWindows, Device? device = null)
    {
        if ((data is null) == (textFile is null)) throw new InvalidOptionException("Data", data, "give a prepared dataset (its val split) or a text file, one of them");
        if (batchSize < 1) throw new InvalidOptionException("BatchSize", $"{batchSize}", "must be >= 1");
        if (maxWindows < 1) throw new InvalidOptionException("Windows", $"{maxWindows}", "must be >= 1");
        var located = ModelLocator.Resolve(model);
        TorchRuntime.EnsureAvailable(cuda: device?.type == DeviceType.CUDA);
        using var lm = HfFormat.Load(located, device);
        if (seqLen < 1 || seqLen > lm.Config.Context) throw new InvalidOptionException("SeqLen", $"{seqLen}", $"must be in 1..{lm.Config.Context}");
        string? temp = null;
        if (textFile is not null)
        {
            var tokenizer = TextTokenizers.ForModel(located);
            using (tokenizer as IDisposable) temp = TextAsShard(textFile, tokenizer);
        }
        try
        {
            using var dataset = TokenDataset.Open(temp ?? data!, "val", lm.Config.Vocab);
            var (loss, windows) = MeanLoss(lm, dataset, seqLen, batchSize, maxWindows, device);
            return new EvalResult(located, loss, Math.Exp(loss), windows, windows * seqLen);
        }
        finally { if (temp is not null) Directory.Delete(temp, true); }
    }

    /// <summary>Mean next-token loss (weighted by windows) over the first <paramref name="maxWindows"/>
    /// non-overlapping windows of a split, in eval mode without gradients. Training and `blr eval` both use it.</summary>
    public static (double Loss, long Windows) MeanLoss(nn.Module<Tensor, Tensor> model, ITokenSource split, int seqLen, int batchSize, long maxWindows, Device? device)
    {
        var (sum, windows) = LossSum(model, split, seqLen, batchSize, maxWindows, device, 0, 1);
        return (sum / windows, windows);
    }

    /// <summary>The summed loss (each batch's mean times its windows) and the windows of every
    /// <paramref name="world"/>-th batch from batch <paramref name="rank"/> on: one rank's share of an evaluation.</summary>
    internal static (double Sum, long Windows) LossSum(nn.Module<Tensor, Tensor> model, ITokenSource split, int seqLen, int batchSize, long maxWindows, Device? device, int rank, int world)
    {
        using var noGrad = no_grad();
        model.eval();
        var layout = Windows.Layout(split, seqLen);
        double sum = 0;
        long windows = 0;
        foreach (var batch in Windows.ValidationBatches(layout, batchSize, maxWindows).Where((_, index) => index % world == rank))
        {
            // Each batch in its own scope: its activations and logits are freed before the next is made.
            using var scope = NewDisposeScope();
            var (inputs, targets) = Windows.Assemble(split, layout, batch, device);
            sum += LanguageModel.Loss(model.forward(inputs), targets).item<float>() * inputs.shape[0];
            windows += inputs.shape[0];
        }
        return (sum, windows);
    }

    /// <summary>A text file as a one-shard "val" split in a temporary folder (one document), in the model's tokenizer.</summary>
    static string TextAsShard(string path, ITextTokenizer tokenizer)
    {
        var text = Corpus.Read(path, new CorpusOptions()).Single().Text;
        var folder = Directory.CreateTempSubdirectory("blr-eval-").FullName;
        using (var writer = new TokenShardWriter(Path.Combine(folder, "val_000000.bin"), tokenizer.VocabSize))
        {
            writer.Write([tokenizer.EndOfText]);
            writer.Write(tokenizer.Encode(text).ToArray());
        }
        return folder;
    }
}

/// <summary>Text generation: temperature, top-k and top-p (nucleus) sampling from one seeded generator, or
/// greedy decoding at temperature 0.</summary>
public static class TextGenerator
{
    /// <summary>Keeps the k most likely tokens and the smallest set whose probability reaches p; the rest get
    /// -inf. logits: (vocab). k = 0 and p = 1 keep everything.</summary>
    public static Tensor Filter(Tensor logits, int topK, double topP)
    {
        if (topK > 0 && topK < logits.shape[0])
        {
            var kth = logits.topk(topK).values[-1];
            logits = logits.masked_fill(logits < kth, double.NegativeInfinity);
        }
        if (topP < 1.0)
        {
            var (sorted, order) = logits.sort(descending: true);
            var cumulative = sorted.softmax(0).cumsum(0);
            // Drop a token when the tokens before it already reach p (the first token always stays).
            var drop = (cumulative - sorted.softmax(0)) >= topP;
            logits = logits.scatter(0, order, sorted.masked_fill(drop, double.NegativeInfinity));
        }
        return logits;
    }

    /// <summary>Continues <paramref name="prompt"/> by <paramref name="maxTokens"/> tokens of the model's tokenizer. Each new token
    /// costs one token's forward pass (a KV cache), whatever its position. Past the model's context the window
    /// slides: the cache is rebuilt from the last half-context of tokens, and <paramref name="note"/> hears it.</summary>
    public static string Generate(string model, string prompt, int maxTokens, double temperature, int topK, double topP, ulong seed,
        Device? device = null, Action<string>? note = null)
    {
        if (maxTokens < 0) throw new InvalidOptionException("MaxTokens", $"{maxTokens}", "must be >= 0");
        if (!(temperature >= 0) || double.IsInfinity(temperature)) throw new InvalidOptionException("Temperature", temperature.ToString(System.Globalization.CultureInfo.InvariantCulture), "must be a finite number >= 0 (0: greedy)");
        if (topK < 0) throw new InvalidOptionException("TopK", $"{topK}", "must be >= 0 (0: off)");
        if (!(topP > 0 && topP <= 1)) throw new InvalidOptionException("TopP", topP.ToString(System.Globalization.CultureInfo.InvariantCulture), "must be in (0, 1]");
        TorchRuntime.EnsureAvailable(cuda: device?.type == DeviceType.CUDA);
        using var lm = ModelLocator.Load(model, device);
        var tokenizer = TextTokenizers.ForModel(ModelLocator.Resolve(model));
        using var owned = tokenizer as IDisposable;   // file tokenizers hold native handles and temporary files
        long[] start = [tokenizer.EndOfText, .. tokenizer.Encode(prompt).Select(t => (long)t)];
        var generated = GenerateTokens(lm, start, maxTokens, temperature, topK, topP, seed, tokenizer.VocabSize, cached: true, note);
        return prompt + tokenizer.Decode(generated.Select(t => (int)t));
    }

    /// <summary>The sampling loop. <paramref name="cached"/> false recomputes the whole window for every token
    /// (the plain reference the cached loop is tested against).</summary>
    internal static List<long> GenerateTokens(LanguageModel lm, long[] prompt, int maxTokens, double temperature, int topK, double topP,
        ulong seed, int vocabulary, bool cached, Action<string>? note = null)
    {
        lm.eval();
        var device = lm.parameters().First().device;
        var context = lm.Config.Context;
        var tokens = new List<long>(prompt.Length > context ? prompt[^context..] : prompt);
        var generator = new Generator(seed);
        using var noGrad = no_grad();
        using var cache = new KvCache(lm.Config.Layers);
        var generated = new List<long>();
        var slid = false;
        for (var i = 0; i < maxTokens; i++)
        {
            using var scope = NewDisposeScope();
            long[] input;
            if (!cached) input = tokens.Skip(Math.Max(0, tokens.Count - context)).ToArray();
            else if (cache.Length == 0) input = [.. tokens];
            else if (cache.Length < context) input = [tokens[^1]];
            else
            {
                // The window is full: keep the last half-context of tokens and rebuild the cache from them.
                if (!slid) note?.Invoke($"past the context of {context} tokens, the window slides by {context / 2} tokens and the cache is rebuilt");
                slid = true;
                cache.Dispose();
                input = tokens.Skip(tokens.Count - context / 2).ToArray();
            }
            var logits = lm.Forward(tensor(input, [1, input.Length], device: device), cached ? cache : null)[0, -1].to(float32).cpu();
            if (logits.shape[0] > vocabulary) logits[vocabulary..] = double.NegativeInfinity;   // vocabulary padding
            long next;
            if (temperature == 0) next = logits.argmax().item<long>();
            else
            {
                var filtered = Filter(logits / temperature, topK, topP);
                next = multinomial(filtered.softmax(0), 1, generator: generator).item<long>();
            }
            tokens.Add(next);
            generated.Add(next);
        }
        return generated;
    }
}
