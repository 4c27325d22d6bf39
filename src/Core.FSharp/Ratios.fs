namespace BlockwiseLR.Core

open BlockwiseLR

open System
open System.Globalization

/// Peak-LR multipliers per block: peak(b) = ratio(b) x base LR (docs/method.md section 3).
/// `OutputHead = None` means "the paper's default": the embedding's ratio when the head is tied to the
/// embedding (they are one tensor), 1 when it is untied (as the official LLaMA script).
type internal RatioSpec =
    {
        /// The token embedding's ratio.
        Embedding: float
        /// The position embedding's ratio (GPT-2).
        PositionEmbedding: float
        /// The attention query/key projections' ratio.
        AttentionQK: float
        /// The attention value/output projections' ratio.
        AttentionVO: float
        /// The MLP's ratio.
        FeedForward: float
        /// The norms' ratio.
        Norm: float
        /// The output head's ratio (None: the paper's default, see the type).
        OutputHead: float option
    }

/// Fixed ratios: the presets, parsing, formatting and validation.
[<RequireQualifiedAccess>]
module internal Ratios =
    /// Every block at the base LR: exactly AdamW.
    let uniform =
        {
            Embedding = 1.0
            PositionEmbedding = 1.0
            AttentionQK = 1.0
            AttentionVO = 1.0
            FeedForward = 1.0
            Norm = 1.0
            OutputHead = None
        }

    /// The paper's ratios: Norm 1, VO 4, FFN 6, QK 8, Embedding 10, PositionEmbedding 1.
    let paper =
        {
            Embedding = 10.0
            PositionEmbedding = 1.0
            AttentionQK = 8.0
            AttentionVO = 4.0
            FeedForward = 6.0
            Norm = 1.0
            OutputHead = None
        }

    /// The presets by name: "paper" and "uniform".
    let presets = [ "paper", paper; "uniform", uniform ]

    /// The ratio of one block. `tiedHead`: the output head is the embedding tensor.
    let ratioOf (tiedHead: bool) (spec: RatioSpec) (kind: BlockKind) =
        match kind with
        | Embedding -> spec.Embedding
        | PositionEmbedding -> spec.PositionEmbedding
        | AttentionQK -> spec.AttentionQK
        | AttentionVO -> spec.AttentionVO
        | FeedForward -> spec.FeedForward
        | Norm -> spec.Norm
        | OutputHead ->
            match spec.OutputHead with
            | _ when tiedHead -> spec.Embedding
            | Some r -> r
            | None -> 1.0

    let private set (spec: RatioSpec) kind value =
        match kind with
        | Embedding -> { spec with Embedding = value }
        | PositionEmbedding -> { spec with PositionEmbedding = value }
        | AttentionQK -> { spec with AttentionQK = value }
        | AttentionVO -> { spec with AttentionVO = value }
        | FeedForward -> { spec with FeedForward = value }
        | Norm -> { spec with Norm = value }
        | OutputHead -> { spec with OutputHead = Some value }

    let private explicitValues spec =
        BlockKind.all
        |> List.choose (fun k ->
            match k with
            | OutputHead -> spec.OutputHead |> Option.map (fun r -> k, r)
            | _ -> Some(k, ratioOf false spec k))

    /// Every ratio finite and > 0. With a tied head an explicit head ratio must equal the embedding's,
    /// because the two are one tensor with one LR.
    let validate (tiedHead: bool) (spec: RatioSpec) : Result<RatioSpec, string> =
        let bad =
            explicitValues spec
            |> List.filter (fun (_, r) ->
                Double.IsNaN r || Double.IsInfinity r || r <= 0.0 || r > OptionRanges.maxRatio)

        match bad, spec.OutputHead with
        | (kind, r) :: _, _ ->
            Error(
                sprintf
                    "ratio %s=%g must be a finite number > 0 and <= %g (a block's peak LR is ratio x base LR)"
                    (BlockKind.key kind)
                    r
                    OptionRanges.maxRatio
            )
        | [], Some head when tiedHead && head <> spec.Embedding ->
            Error(
                sprintf
                    "head=%g differs from emb=%g, but this model ties its output head to the embedding; drop head= or \
                     set it equal to emb"
                    head
                    spec.Embedding
            )
        | [], _ -> Ok spec

    /// `emb=10,pe=1,qk=8,vo=4,ffn=6,norm=1[,head=H]`, the text `parse` reads back.
    let format (spec: RatioSpec) =
        explicitValues spec
        |> List.map (fun (k, r) -> sprintf "%s=%s" (BlockKind.key k) (r.ToString("R", CultureInfo.InvariantCulture)))
        |> String.concat ","

    /// Reads `paper`, `uniform`, or a map like `emb=10,head=10,qk=8,vo=4,ffn=6,norm=1`. A preset may be
    /// followed by overrides (`paper,head=10`). In a bare map, blocks not named get ratio 1 and `head`
    /// follows the paper's default. Values are checked with `validate`-style messages (tied-ness is checked
    /// later, by `validate`, once the model is known).
    let parse (text: string) : Result<RatioSpec, string> =
        let items =
            text.Split(',')
            |> Array.map (fun s -> s.Trim())
            |> Array.filter (fun s -> s <> "")
            |> List.ofArray

        let start, overrides =
            match items with
            | first :: rest when not (first.Contains "=") ->
                match
                    presets
                    |> List.tryFind (fun (n, _) -> String.Equals(n, first, StringComparison.OrdinalIgnoreCase))
                with
                | Some(_, preset) -> Ok preset, rest
                | None ->
                    Error(
                        sprintf
                            "ratios '%s': unknown preset '%s' (presets: paper, uniform; or a map like emb=10,qk=8)"
                            text
                            first
                    ),
                    rest
            | _ -> Ok uniform, items

        if items.IsEmpty then
            Error "ratios are empty: give a preset (paper, uniform) or a map like emb=10,qk=8,vo=4,ffn=6,norm=1"
        else
            let folder (state: Result<RatioSpec * Set<string>, string>) (item: string) =
                state
                |> Result.bind (fun (spec, seen) ->
                    match item.Split('=') with
                    | [| key; value |] ->
                        let key = key.Trim().ToLowerInvariant()

                        match BlockKind.all |> List.tryFind (fun k -> BlockKind.key k = key) with
                        | None ->
                            Error(sprintf "ratios '%s': unknown key '%s' (keys: %s)" text key BlockKind.knownKeys)
                        | Some _ when seen.Contains key ->
                            Error(sprintf "ratios '%s': key '%s' is given twice" text key)
                        | Some kind ->
                            match Double.TryParse(value.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture) with
                            | true, r when
                                not (Double.IsNaN r || Double.IsInfinity r)
                                && r > 0.0
                                && r <= OptionRanges.maxRatio
                                ->
                                Ok(set spec kind r, seen.Add key)
                            | _ ->
                                Error(
                                    sprintf
                                        "ratios '%s': %s=%s must be a finite number > 0 and <= %g"
                                        text
                                        key
                                        (value.Trim())
                                        OptionRanges.maxRatio
                                )
                    | _ -> Error(sprintf "ratios '%s': '%s' is not KEY=VALUE" text item))

            start
            |> Result.map (fun s -> s, Set.empty)
            |> fun init -> List.fold folder init overrides
            |> Result.map fst
