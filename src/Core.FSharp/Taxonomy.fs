namespace BlockwiseLR.Core

open BlockwiseLR

open System
open System.Text.RegularExpressions

/// The kinds of Transformer blocks whose sharpness differs (docs/method.md section 1):
/// S(Embedding) << S(QK) < S(FFN) < S(VO) << S(Norm).
type internal BlockKind =
    /// The token embedding (and a head tied to it).
    | Embedding
    /// The learned position embedding (GPT-2).
    | PositionEmbedding
    /// The attention query and key projections.
    | AttentionQK
    /// The attention value and output projections.
    | AttentionVO
    /// The MLP.
    | FeedForward
    /// The norms' weights and biases.
    | Norm
    /// An untied output head (lm_head).
    | OutputHead

/// The list of block kinds and their short keys.
[<RequireQualifiedAccess>]
module internal BlockKind =
    /// Every block kind, in order.
    let all =
        [
            Embedding
            PositionEmbedding
            AttentionQK
            AttentionVO
            FeedForward
            Norm
            OutputHead
        ]

    /// The short key used in ratio maps, rule files and CLI options.
    let key kind =
        match kind with
        | Embedding -> "emb"
        | PositionEmbedding -> "pe"
        | AttentionQK -> "qk"
        | AttentionVO -> "vo"
        | FeedForward -> "ffn"
        | Norm -> "norm"
        | OutputHead -> "head"

    /// The short keys, as text for messages: "emb, pe, qk, vo, ffn, norm, head".
    let knownKeys = all |> List.map key |> String.concat ", "

    /// Accepts the short key (`qk`) or the case name (`AttentionQK`), case-insensitively.
    let tryParse (text: string) =
        let t = text.Trim()

        all
        |> List.tryFind (fun k ->
            String.Equals(key k, t, StringComparison.OrdinalIgnoreCase)
            || String.Equals(string k, t, StringComparison.OrdinalIgnoreCase))

/// Where a rule sends a parameter's coordinates.
type internal BlockAssignment =
    /// The whole tensor belongs to one block.
    | Whole of BlockKind
    /// A fused projection cut into equal parts along its output dimension, one block each
    /// (GPT-2's `c_attn`: Q | K | V -> [AttentionQK; AttentionQK; AttentionVO]).
    | Fused of BlockKind list

/// An ordered rule: the first rule whose pattern matches a parameter decides its block.
/// Patterns are globs (`*` any run of characters, `?` one character) matched against the whole name or any
/// suffix of it that starts after a dot, so `mlp.c_fc.weight` matches `transformer.h.3.mlp.c_fc.weight`.
/// Rules name weights: a `.bias` is classified as the `.weight` beside it, so a bias always follows its weight.
type internal BlockRule =
    {
        /// A glob matched against the parameter's name or a dot-separated suffix of it.
        Pattern: string
        /// Where the rule sends the parameter.
        Assignment: BlockAssignment
    }

/// A parameter as the partition sees it: its state-dict name and its shape.
type internal ParameterInfo =
    {
        /// The state-dict name.
        Name: string
        /// The shape.
        Shape: int64 list
    }

/// The result of placing one parameter: the whole tensor in one block, or slices along one dimension.
type internal Placement =
    /// The whole tensor in one block.
    | WholeTensor of BlockKind
    /// (start, length, block) slices that tile dimension `dim`.
    | Slices of dim: int * parts: (int64 * int64 * BlockKind) list

/// A parameter and where its coordinates go.
type internal PlacedParameter =
    {
        /// The parameter.
        Parameter: ParameterInfo
        /// Where its coordinates go.
        Placement: Placement
    }

/// Matching rules against parameter names, and the built-in rules.
[<RequireQualifiedAccess>]
module internal BlockRule =
    let private globToRegex (pattern: string) =
        let body = Regex.Escape(pattern).Replace(@"\*", ".*").Replace(@"\?", ".")
        Regex(@"^(?:.*\.)?" + body + "$", RegexOptions.CultureInvariant)

    let private cache = Collections.Concurrent.ConcurrentDictionary<string, Regex>()

    /// True when the glob matches the name or a dot-separated suffix of it.
    let matches (pattern: string) (name: string) =
        cache.GetOrAdd(pattern, globToRegex).IsMatch name

    /// The name a rule is matched against: a bias is classified as its weight.
    let ruleName (name: string) =
        if name.EndsWith(".bias", StringComparison.Ordinal) then
            name.Substring(0, name.Length - ".bias".Length) + ".weight"
        else
            name

    let private rule pattern kind =
        {
            Pattern = pattern
            Assignment = Whole kind
        }

    /// Built-in rules for Hugging Face LLaMA, Hugging Face GPT-2 (fused Conv1D `c_attn`), nanoGPT's GPT-2
    /// (fused Linear `c_attn`) and BlockwiseLR's own GPT-2 (HF names, `attn.q_proj/k_proj/v_proj`).
    let defaults =
        [ // LLaMA (Hugging Face names; BlockwiseLR's LLaMA uses the same)
            rule "embed_tokens.weight" Embedding
            rule "lm_head.weight" OutputHead
            rule "self_attn.q_proj.weight" AttentionQK
            rule "self_attn.k_proj.weight" AttentionQK
            rule "self_attn.v_proj.weight" AttentionVO
            rule "self_attn.o_proj.weight" AttentionVO
            rule "mlp.gate_proj.weight" FeedForward
            rule "mlp.up_proj.weight" FeedForward
            rule "mlp.down_proj.weight" FeedForward
            rule "input_layernorm.weight" Norm
            rule "post_attention_layernorm.weight" Norm
            rule "model.norm.weight" Norm
            // GPT-2 (Hugging Face, nanoGPT and BlockwiseLR names)
            rule "wte.weight" Embedding
            rule "wpe.weight" PositionEmbedding
            rule "attn.q_proj.weight" AttentionQK
            rule "attn.k_proj.weight" AttentionQK
            rule "attn.v_proj.weight" AttentionVO
            {
                Pattern = "attn.c_attn.weight"
                Assignment = Fused [ AttentionQK; AttentionQK; AttentionVO ]
            }
            rule "attn.c_proj.weight" AttentionVO
            rule "mlp.c_fc.weight" FeedForward
            rule "mlp.c_proj.weight" FeedForward
            rule "ln_1.weight" Norm
            rule "ln_2.weight" Norm
            rule "ln_f.weight" Norm
        ]

    /// `pattern=block`'s right side: a block key, or for a fused projection the keys joined by commas.
    let formatAssignment assignment =
        match assignment with
        | Whole kind -> BlockKind.key kind
        | Fused kinds -> kinds |> List.map BlockKind.key |> String.concat ","

    /// `pattern=block` or, for a fused projection, `pattern=qk,qk,vo`.
    let format rule =
        rule.Pattern + "=" + formatAssignment rule.Assignment

    /// Parses one rule written as `pattern=block` (blocks: emb, pe, qk, vo, ffn, norm, head) or
    /// `pattern=qk,qk,vo` for a fused projection split into equal parts.
    let parse (text: string) : Result<BlockRule, string> =
        match text.Split('=') with
        | [| pattern; target |] when pattern.Trim() <> "" ->
            let parts = target.Split(',') |> Array.map (fun s -> s.Trim())
            let kinds = parts |> Array.map BlockKind.tryParse

            match Array.tryFindIndex Option.isNone kinds with
            | Some i ->
                Error(sprintf "rule '%s': unknown block '%s' (known: %s)" (text.Trim()) parts[i] BlockKind.knownKeys)
            | None ->
                let kinds = kinds |> Array.map Option.get |> List.ofArray
                let assignment = if kinds.Length = 1 then Whole kinds.Head else Fused kinds

                Ok
                    {
                        Pattern = pattern.Trim()
                        Assignment = assignment
                    }
        | _ -> Error(sprintf "rule '%s' is not PATTERN=BLOCK, e.g. 'layers.*.attention.wq.weight=qk'" (text.Trim()))

    /// Parses a rule file: one rule a line, `#` starts a comment. `source` names the text in messages.
    let parseMany (source: string) (text: string) : Result<BlockRule list, string> =
        let results =
            text.Split('\n')
            |> Array.mapi (fun i line -> i + 1, (line.Split('#')[0]).Trim())
            |> Array.filter (fun (_, line) -> line <> "")
            |> Array.map (fun (lineNo, line) ->
                parse line
                |> Result.mapError (fun e -> sprintf "%s line %d: %s" source lineNo e))

        match
            results
            |> Array.tryPick (function
                | Error e -> Some e
                | Ok _ -> None)
        with
        | Some e -> Error e
        | None ->
            Ok(
                results
                |> Array.choose (function
                    | Ok r -> Some r
                    | Error _ -> None)
                |> List.ofArray
            )

    /// User rules come first, so they add to and override the built-in ones.
    let withUserRules (userRules: BlockRule list) (rules: BlockRule list) = userRules @ rules

/// Placing parameters into blocks by the rules.
[<RequireQualifiedAccess>]
module internal Taxonomy =
    /// The assignment of the first rule that matches, if any.
    let classify (rules: BlockRule list) (name: string) : BlockAssignment option =
        let target = BlockRule.ruleName name

        rules
        |> List.tryFind (fun r -> BlockRule.matches r.Pattern target)
        |> Option.map (fun r -> r.Assignment)

    /// The dimension a fused projection is cut along: the only dimension of a bias; for a matrix, the one
    /// that is `parts` times the other ((in, parts*out) for a Conv1D, (parts*out, in) for a Linear).
    let private fusedDim (p: ParameterInfo) parts =
        match p.Shape with
        | [ n ] when n % int64 parts = 0L -> Ok 0
        | [ rows; cols ] when cols = int64 parts * rows -> Ok 1
        | [ rows; cols ] when rows = int64 parts * cols -> Ok 0
        | shape ->
            Error(
                sprintf
                    "%s %A: a fused rule with %d parts needs one dimension %d times the other"
                    p.Name
                    shape
                    parts
                    parts
            )

    /// The placement of `p` by the first rule that matches it, or the reason: no rule matches, or a fused rule does not
    /// fit its shape.
    let place (rules: BlockRule list) (p: ParameterInfo) : Result<PlacedParameter, string> option =
        classify rules p.Name
        |> Option.map (fun assignment ->
            match assignment with
            | Whole kind ->
                Ok
                    {
                        Parameter = p
                        Placement = WholeTensor kind
                    }
            | Fused kinds ->
                fusedDim p kinds.Length
                |> Result.map (fun dim ->
                    let part = p.Shape[dim] / int64 kinds.Length
                    let slices = kinds |> List.mapi (fun i kind -> int64 i * part, part, kind)

                    {
                        Parameter = p
                        Placement = Slices(dim, slices)
                    }))

    /// Places every parameter in exactly one block (or, for a fused projection, each slice in one block).
    /// Unlike the official code, which silently skips what it does not recognise, an unmatched parameter is
    /// an error, and the error lists every unmatched name.
    let partition (rules: BlockRule list) (parameters: ParameterInfo list) : Result<PlacedParameter list, string> =
        let duplicates =
            parameters
            |> List.countBy (fun p -> p.Name)
            |> List.filter (fun (_, n) -> n > 1)
            |> List.map fst

        if not duplicates.IsEmpty then
            Error(sprintf "parameter names must be unique; repeated: %s" (String.concat ", " duplicates))
        else
            let placed = parameters |> List.map (fun p -> p, place rules p)

            let unmatched =
                placed |> List.choose (fun (p, r) -> if r.IsNone then Some p.Name else None)

            let failures =
                placed
                |> List.choose (fun (_, r) ->
                    match r with
                    | Some(Error e) -> Some e
                    | _ -> None)

            if not unmatched.IsEmpty then
                Error(
                    sprintf
                        "%d parameter(s) match no block rule: %s. Add a rule PATTERN=BLOCK (blocks: %s)"
                        unmatched.Length
                        (String.concat ", " unmatched)
                        BlockKind.knownKeys
                )
            elif not failures.IsEmpty then
                Error(String.concat "; " failures)
            else
                Ok(
                    placed
                    |> List.map (fun (_, r) ->
                        match r with
                        | Some(Ok x) -> x
                        | _ -> failwith "unreachable")
                )

    /// Elements in a tensor of `shape` (1 for a scalar).
    let numel (shape: int64 list) = List.fold (*) 1L shape

    /// The number of coordinates of one placed parameter in each block it touches.
    let coordinates (placed: PlacedParameter) : (BlockKind * int64) list =
        let total = numel placed.Parameter.Shape

        match placed.Placement with
        | WholeTensor kind -> [ kind, total ]
        | Slices(dim, parts) ->
            let perIndex = total / placed.Parameter.Shape[dim]
            parts |> List.map (fun (_, length, kind) -> kind, length * perIndex)

    /// Parameter count per block kind, in `BlockKind.all` order, omitting empty blocks.
    let countsByBlock (placed: PlacedParameter list) : (BlockKind * int64) list =
        let sums = placed |> List.collect coordinates |> List.groupBy fst |> Map.ofList

        BlockKind.all
        |> List.choose (fun k -> sums |> Map.tryFind k |> Option.map (fun xs -> k, xs |> List.sumBy snd))
