namespace BlockwiseLR.Core

open BlockwiseLR

open System
open System.Globalization

/// The named configs, overrides, validation and parameter shapes of GPT-2 and LLaMA models.
[<RequireQualifiedAccess>]
[<CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
module internal ModelConfig =
    let private gpt2 layers width heads context =
        {
            Architecture = Architecture.Gpt2
            Layers = layers
            Width = width
            Heads = heads
            KvHeads = heads
            FeedForward = 4 * width
            Context = context
            Vocab = 50304
            Bias = false
            Tied = true
            NormEps = 1e-5
            RopeTheta = 10000.0
        }

    let private llama layers width heads kvHeads feedForward context =
        {
            Architecture = Architecture.Llama
            Layers = layers
            Width = width
            Heads = heads
            KvHeads = kvHeads
            FeedForward = feedForward
            Context = context
            Vocab = 50304
            Bias = false
            Tied = false
            NormEps = 1e-5
            RopeTheta = 10000.0
        }

    /// Named configurations. GPT-2 sizes follow the paper and nanoGPT: vocab padded to 50304, bias-free,
    /// tied head (override `vocab=50257,bias=true` for Hugging Face's gpt2). LLaMA sizes are the paper's
    /// (docs/method.md section 5): head dim 64, SwiGLU, vocab 50304, untied head.
    let named =
        [
            "gpt2-tiny", gpt2 4 128 4 256
            "gpt2-small", gpt2 12 768 12 1024
            "gpt2-medium", gpt2 24 1024 16 1024
            "llama-tiny", llama 4 128 4 2 352 256
            "llama-0.13b", llama 6 768 12 12 3072 1024
            "llama-0.25b", llama 8 1024 16 16 4096 1024
            "llama-0.5b", llama 15 1280 20 20 5120 1024
            "llama-0.75b", llama 13 1664 26 26 6656 1024
            "llama-0.9b", llama 18 1600 25 25 6400 1024
            "llama-1.1b", llama 22 2048 32 4 5632 2048
        ]

    /// The named configs, as text for messages.
    let names = named |> List.map fst |> String.concat ", "

    /// The named config `name` (any case, surrounding spaces ignored), or the reason it is unknown.
    let tryNamed (name: string) : Result<ModelConfig, string> =
        match
            named
            |> List.tryFind (fun (n, _) -> String.Equals(n, name.Trim(), StringComparison.OrdinalIgnoreCase))
        with
        | Some(_, config) -> Ok config
        | None -> Error(sprintf "unknown model '%s' (known: %s)" name names)

    /// Keys accepted by `withOverride`.
    let overrideKeys =
        "layers, width, heads, kv-heads, d-ff, context, vocab, bias, tied, norm-eps, rope-theta"

    /// Sets one field from text. Changing the width keeps d_ff's ratio to the width unless d-ff is also
    /// given (apply d-ff after width); changing GPT-2's heads also sets its kv-heads.
    let withOverride (key: string) (value: string) (config: ModelConfig) : Result<ModelConfig, string> =
        let positive () =
            match Int32.TryParse(value.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture) with
            | true, n when n > 0 -> Ok n
            | _ -> Error(sprintf "model override %s=%s: expected a whole number > 0" key value)

        let flag () =
            match value.Trim().ToLowerInvariant() with
            | "true"
            | "yes"
            | "1" -> Ok true
            | "false"
            | "no"
            | "0" -> Ok false
            | _ -> Error(sprintf "model override %s=%s: expected true or false" key value)

        let number () =
            match Double.TryParse(value.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture) with
            | true, x when x > 0.0 && not (Double.IsInfinity x) -> Ok x
            | _ -> Error(sprintf "model override %s=%s: expected a finite number > 0" key value)

        match key.Trim().ToLowerInvariant().Replace('_', '-') with
        | "layers" -> positive () |> Result.map (fun n -> { config with Layers = n })
        | "width" ->
            positive ()
            |> Result.map (fun n ->
                { config with
                    Width = n
                    FeedForward = max 1 (int (round (float config.FeedForward * float n / float config.Width)))
                })
        | "heads" ->
            positive ()
            |> Result.map (fun n ->
                { config with
                    Heads = n
                    KvHeads =
                        (if config.Architecture = Architecture.Gpt2 then
                             n
                         else
                             config.KvHeads)
                })
        | "kv-heads" -> positive () |> Result.map (fun n -> { config with KvHeads = n })
        | "d-ff"
        | "ff" -> positive () |> Result.map (fun n -> { config with FeedForward = n })
        | "context" -> positive () |> Result.map (fun n -> { config with Context = n })
        | "vocab" -> positive () |> Result.map (fun n -> { config with Vocab = n })
        | "bias" -> flag () |> Result.map (fun b -> { config with Bias = b })
        | "tied" -> flag () |> Result.map (fun b -> { config with Tied = b })
        | "norm-eps" -> number () |> Result.map (fun x -> { config with NormEps = x })
        | "rope-theta" -> number () |> Result.map (fun x -> { config with RopeTheta = x })
        | other -> Error(sprintf "unknown model override '%s' (known: %s)" other overrideKeys)

    /// `config` if its sizes are consistent, or the reason it is not.
    let validate (config: ModelConfig) : Result<ModelConfig, string> =
        let c = config

        if
            [ c.Layers; c.Width; c.Heads; c.KvHeads; c.FeedForward; c.Context; c.Vocab ]
            |> List.exists (fun n -> n < 1)
        then
            Error "layers, width, heads, kv-heads, d-ff, context and vocab must all be >= 1"
        elif c.Width % c.Heads <> 0 then
            Error(sprintf "width %d is not divisible by heads %d" c.Width c.Heads)
        elif c.Heads % c.KvHeads <> 0 then
            Error(sprintf "heads %d is not divisible by kv-heads %d" c.Heads c.KvHeads)
        elif c.Architecture = Architecture.Gpt2 && c.KvHeads <> c.Heads then
            Error(sprintf "GPT-2 has no grouped-query attention: kv-heads %d must equal heads %d" c.KvHeads c.Heads)
        elif c.Architecture = Architecture.Llama && c.HeadDim % 2 <> 0 then
            Error(sprintf "RoPE needs an even head dim; width %d / heads %d = %d" c.Width c.Heads c.HeadDim)
        elif not (c.NormEps > 0.0) || not (c.RopeTheta > 0.0) then
            Error "norm-eps and rope-theta must be > 0"
        else
            Ok c

    /// A config with `key=value` overrides applied in order (d-ff after everything else, so an explicit d-ff
    /// wins over the width's rescaling), validated.
    let withOverrides (overrides: (string * string) list) (config: ModelConfig) : Result<ModelConfig, string> =
        let isFeedForward (key: string) =
            List.contains (key.Trim().ToLowerInvariant().Replace('_', '-')) [ "d-ff"; "ff" ]

        overrides
        |> List.sortBy (fun (k, _) -> isFeedForward k)
        |> List.fold (fun acc (k, v) -> acc |> Result.bind (withOverride k v)) (Ok config)
        |> Result.bind validate

    /// A named config with `key=value` overrides (see `withOverrides`), validated.
    let create (name: string) (overrides: (string * string) list) : Result<ModelConfig, string> =
        tryNamed name |> Result.bind (withOverrides overrides)

    /// The model's parameters in state-dict order, with BlockwiseLR's names (Hugging Face names wherever HF
    /// has one; GPT-2's fused c_attn as attn.q_proj/k_proj/v_proj) and Linear (out, in) shapes.
    let parameters (c: ModelConfig) : ParameterInfo list =
        let d = int64 c.Width
        let ff = int64 c.FeedForward
        let p name shape = { Name = name; Shape = shape }

        let linear name outDim inDim =
            [
                yield p (name + ".weight") [ outDim; inDim ]
                if c.Bias then
                    yield p (name + ".bias") [ outDim ]
            ]

        match c.Architecture with
        | Architecture.Gpt2 ->
            let layerNorm name =
                [
                    yield p (name + ".weight") [ d ]
                    if c.Bias then
                        yield p (name + ".bias") [ d ]
                ]

            [
                yield p "transformer.wte.weight" [ int64 c.Vocab; d ]
                yield p "transformer.wpe.weight" [ int64 c.Context; d ]
                for i in 0 .. c.Layers - 1 do
                    let h = sprintf "transformer.h.%d." i
                    yield! layerNorm (h + "ln_1")
                    yield! linear (h + "attn.q_proj") d d
                    yield! linear (h + "attn.k_proj") d d
                    yield! linear (h + "attn.v_proj") d d
                    yield! linear (h + "attn.c_proj") d d
                    yield! layerNorm (h + "ln_2")
                    yield! linear (h + "mlp.c_fc") ff d
                    yield! linear (h + "mlp.c_proj") d ff
                yield! layerNorm "transformer.ln_f"
                if not c.Tied then
                    yield p "lm_head.weight" [ int64 c.Vocab; d ]
            ]
        | _ ->
            let q = int64 (c.Heads * c.HeadDim)
            let kv = int64 (c.KvHeads * c.HeadDim)

            [
                yield p "model.embed_tokens.weight" [ int64 c.Vocab; d ]
                for i in 0 .. c.Layers - 1 do
                    let l = sprintf "model.layers.%d." i
                    yield p (l + "input_layernorm.weight") [ d ]
                    yield! linear (l + "self_attn.q_proj") q d
                    yield! linear (l + "self_attn.k_proj") kv d
                    yield! linear (l + "self_attn.v_proj") kv d
                    yield! linear (l + "self_attn.o_proj") d q
                    yield p (l + "post_attention_layernorm.weight") [ d ]
                    yield! linear (l + "mlp.gate_proj") ff d
                    yield! linear (l + "mlp.up_proj") ff d
                    yield! linear (l + "mlp.down_proj") d ff
                yield p "model.norm.weight" [ d ]
                if not c.Tied then
                    yield p "lm_head.weight" [ int64 c.Vocab; d ]
            ]

    /// Parameters (elements) in the model.
    let parameterCount (c: ModelConfig) =
        parameters c |> List.sumBy (fun p -> Taxonomy.numel p.Shape)

    /// The attention shape (width, heads, kv-heads) Adam-mini needs.
    let attention (c: ModelConfig) : AttentionShape =
        {
            Width = c.Width
            Heads = c.Heads
            KvHeads = c.KvHeads
        }

    /// Residual output projections, whose init std nanoGPT scales by 1/sqrt(2 x layers).
    let isResidualProjection (name: string) =
        name.EndsWith("attn.c_proj.weight", StringComparison.Ordinal)
        || name.EndsWith("mlp.c_proj.weight", StringComparison.Ordinal)
        || name.EndsWith("self_attn.o_proj.weight", StringComparison.Ordinal)
        || name.EndsWith("mlp.down_proj.weight", StringComparison.Ordinal)
