using BlockwiseLR.Data;
using BlockwiseLR.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace BlockwiseLR.Training;

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

    /// <summary>Continues <paramref name="prompt"/> by <paramref name="maxTokens"/> tokens of the model's tokenizer.
    /// Each new token costs one token's forward pass (a KV cache), whatever its position. Past the model's context the
    /// window slides: the cache is rebuilt from the last half-context of tokens, and <paramref name="note"/> hears
    /// it.</summary>
    public static string Generate(
        string model,
        string prompt,
        int maxTokens,
        double temperature,
        int topK,
        double topP,
        ulong seed,
        Device? device = null,
        Action<string>? note = null
    )
    {
        Ranges.Check("MaxTokens", "max-tokens", maxTokens);
        Ranges.Check("Temperature", "temperature", temperature);
        Ranges.Check("TopK", "top-k", topK);
        Ranges.Check("TopP", "top-p", topP);
        TorchRuntime.EnsureAvailable(cuda: device?.type == DeviceType.CUDA);
        using var lm = ModelLocator.Load(model, device);
        var tokenizer = TextTokenizers.ForModel(ModelLocator.Resolve(model));
        using var owned = tokenizer as IDisposable; // file tokenizers hold native handles and temporary files
        long[] start = [tokenizer.EndOfText, .. tokenizer.Encode(prompt).Select(t => (long)t)];
        var generated = GenerateTokens(
            lm,
            start,
            maxTokens,
            temperature,
            topK,
            topP,
            seed,
            tokenizer.VocabSize,
            cached: true,
            note
        );
        return prompt + tokenizer.Decode(generated.Select(t => (int)t));
    }

    /// <summary>The sampling loop. <paramref name="cached"/> false recomputes the whole window for every token
    /// (the plain reference the cached loop is tested against).</summary>
    internal static List<long> GenerateTokens(
        LanguageModel lm,
        long[] prompt,
        int maxTokens,
        double temperature,
        int topK,
        double topP,
        ulong seed,
        int vocabulary,
        bool cached,
        Action<string>? note = null
    )
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
            if (!cached)
                input = tokens.Skip(Math.Max(0, tokens.Count - context)).ToArray();
            else if (cache.Length == 0)
                input = [.. tokens];
            else if (cache.Length < context)
                input = [tokens[^1]];
            else
            {
                // The window is full: keep the last half-context of tokens and rebuild the cache from them.
                if (!slid)
                    note?.Invoke(
                        $"past the context of {context} tokens, the window slides by {context / 2} tokens and the "
                            + $"cache is rebuilt"
                    );
                slid = true;
                cache.Dispose();
                input = tokens.Skip(tokens.Count - context / 2).ToArray();
            }
            var logits = lm.Forward(tensor(input, [1, input.Length], device: device), cached ? cache : null)[0, -1]
                .to(float32)
                .cpu();
            if (logits.shape[0] > vocabulary)
                logits[vocabulary..] = double.NegativeInfinity; // vocabulary padding
            long next;
            if (temperature == 0)
                next = logits.argmax().item<long>();
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
