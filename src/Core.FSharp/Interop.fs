namespace BlockwiseLR.Core

open BlockwiseLR

open System
open System.Collections.Generic

/// The core's face for C#, written once: static classes with PascalCase members that take and return
/// IReadOnlyList, IReadOnlyDictionary, Func and nullable values, so the C# facade never calls a compiled
/// `*Module` name or holds an F# list, map, option or function (FsCheck.Fluent and Expecto's C# surface are the
/// pattern). F# code uses the modules directly. A decision the core can refuse comes back as a `Checked`.
/// A core decision as C# takes it: the value, or the one-line reason it was refused.
[<Struct>]
type internal Checked<'T> =
    {
        /// The value (undefined when `Error` is not null).
        Value: 'T
        /// The reason, or null when the value is good.
        Error: string
    }

    /// True when the value is good (`Error` is null).
    member c.IsOk = isNull c.Error

    /// The value, or the exception `refusal` makes of the reason.
    member c.OrThrow(refusal: Func<string, exn>) =
        if isNull c.Error then
            c.Value
        else
            raise (refusal.Invoke c.Error)

module internal Checked =
    let ofResult (result: Result<'T, string>) : Checked<'T> =
        match result with
        | Ok value -> { Value = value; Error = null }
        | Error reason ->
            {
                Value = Unchecked.defaultof<'T>
                Error = reason
            }

    let map (f: 'T -> 'U) (result: Result<'T, string>) = result |> Result.map f |> ofResult

module internal Collections =
    let readOnly (items: 'T seq) = List<'T>(items) :> IReadOnlyList<'T>

    let dictionary (pairs: ('K * 'V) seq) =
        let result = Dictionary<'K, 'V>()

        for key, value in pairs do
            result[key] <- value

        result :> IReadOnlyDictionary<'K, 'V>

    /// A map by block kind as a dictionary keyed by block key (emb, qk, ...), for saving.
    let byKey (values: Map<BlockKind, 'T>) =
        let result = Dictionary<string, 'T>()

        for KeyValue(kind, value) in values do
            result[BlockKind.key kind] <- value

        result

    /// A saved dictionary keyed by block key back as a map by block kind (an unknown key is refused).
    let ofKeys (values: IReadOnlyDictionary<string, 'T>) =
        values
        |> Seq.map (fun kv ->
            match BlockKind.tryParse kv.Key with
            | Some kind -> kind, kv.Value
            | None -> invalidArg "values" (sprintf "unknown block key '%s' (known: %s)" kv.Key BlockKind.knownKeys))
        |> Map.ofSeq

open Collections

/// Sharpness-adaptive ratios (AutoRatios.fs) for C#.
[<AbstractClass; Sealed>]
type internal AutoRatioRules =
    /// No measurement yet: every ratio 1.
    static member Start = AutoRatios.start

    /// The steps before the first ratio update (`AutoRatios.settle`).
    static member Settle(warmup: int, smoothing: float) = AutoRatios.settle warmup smoothing

    /// One step's measurements of a block; `smallSquared` is the small batch's squared gradient norm (the first
    /// micro-batch, or the first half of the batch; null without the noise measurement).
    static member Observation(block: BlockKind, squared: float, parameters: int64, smallSquared: Nullable<float>) =
        {
            Block = block
            Squared = squared
            Parameters = parameters
            SmallSquared = Option.ofNullable smallSquared
        }

    /// Folds one step's measurements into the state (`AutoRatios.observe`).
    static member Observe(rule: AutoRatioRule, measured: IEnumerable<AutoRatioObservation>, state: AutoRatioState) =
        AutoRatios.observe rule (List.ofSeq measured) state

    /// The ratio in force for a block (1 until the first update).
    static member RatioOf(state: AutoRatioState, block: BlockKind) = AutoRatios.ratioOf state block

    /// A block's LR at a step under the ratio in force (`AutoRatios.lrAt`).
    static member LrAt(spec: ScheduleSpec, state: AutoRatioState, block: BlockKind, step: int) =
        AutoRatios.lrAt spec state block step

    /// A state saved as dictionaries keyed by block key (emb, qk, ...); `noise` is the noise-scale part
    /// (`NoiseScaleRules.Restore`; the start state when the checkpoint has none).
    static member Restore
        (
            steps: int,
            smoothed: IReadOnlyDictionary<string, float>,
            ratios: IReadOnlyDictionary<string, float>,
            smallSquared: IReadOnlyDictionary<string, float>,
            bigSquared: IReadOnlyDictionary<string, float>,
            noise: NoiseScaleState
        ) =
        {
            Steps = steps
            Smoothed = ofKeys smoothed
            Ratios = ofKeys ratios
            SmallSquared = ofKeys smallSquared
            BigSquared = ofKeys bigSquared
            Noise = noise
        }

    /// A map of the state as a dictionary keyed by block key (emb, qk, ...), for saving.
    static member Keyed(values: Map<BlockKind, float>) : Dictionary<string, float> = byKey values

/// The gradient-noise scale (NoiseScale.fs) for C#.
[<AbstractClass; Sealed>]
type internal NoiseScaleRules =
    /// Nothing measured yet.
    static member Start = NoiseScale.start

    /// Folds one measurement in: per block, the squared gradient norm over the small and over the whole batch.
    static member Observe
        (smoothing: float, measured: IEnumerable<struct (BlockKind * float * float)>, state: NoiseScaleState)
        =
        NoiseScale.observe smoothing [ for struct (k, s, b) in measured -> k, s, b ] state

    /// A block's B_simple in sequences (null: not measured or no signal estimate).
    static member OfBlock(small: int, big: int, state: NoiseScaleState, kind: BlockKind) =
        NoiseScale.ofBlock small big state kind |> Option.toNullable

    /// The whole model's B_simple in sequences (null: not measured or no signal estimate).
    static member OfModel(small: int, big: int, state: NoiseScaleState) =
        NoiseScale.ofModel small big state |> Option.toNullable

    /// A state saved as (small, big, scale) triples keyed by block key (emb, qk, ...) and the model's triple.
    static member Restore(measured: int, blocks: IReadOnlyDictionary<string, float[]>, model: float[]) =
        let sums (v: float[]) =
            if v.Length <> 3 then
                invalidArg "values" "a noise-scale entry is [small, big, scale]"

            {
                Small = v[0]
                Big = v[1]
                Scale = v[2]
            }

        {
            Measured = measured
            Blocks = ofKeys blocks |> Map.map (fun _ v -> sums v)
            Model = sums model
        }

    /// The state as saved: [small, big, scale] per block key, and the model's.
    static member Saved(state: NoiseScaleState) =
        let triple (sums: NoiseScaleSums) = [| sums.Small; sums.Big; sums.Scale |]
        struct (byKey (state.Blocks |> Map.map (fun _ v -> triple v)), triple state.Model)

/// The block kinds (Taxonomy.fs) for C#.
[<AbstractClass; Sealed>]
type internal BlockKinds =
    /// Every kind, in declaration order.
    static member All: IReadOnlyList<BlockKind> = BlockKind.all :> IReadOnlyList<BlockKind>

    /// The short key used in ratio maps, rule files and CLI options: emb, pe, qk, vo, ffn, norm, head.
    static member Key(kind: BlockKind) = BlockKind.key kind

    /// The kind of a short key or case name (any case), or null.
    static member TryParse(text: string) : BlockKind =
        match BlockKind.tryParse text with
        | Some kind -> kind
        | None -> Unchecked.defaultof<BlockKind>

/// Model configs (ModelConfig.fs) for C#.
[<AbstractClass; Sealed>]
type internal ModelConfigRules =
    /// The named configs, in table order.
    static member Names: IReadOnlyList<string> = ModelConfig.named |> List.map fst |> readOnly

    /// The named config `name` (any case), or the reason it is unknown (listing the names).
    static member TryNamed(name: string) =
        ModelConfig.tryNamed name |> Checked.ofResult

    /// A named config with KEY=VALUE overrides applied in order.
    static member Create(name: string, overrides: IEnumerable<KeyValuePair<string, string>>) =
        ModelConfig.create name [ for kv in overrides -> kv.Key, kv.Value ]
        |> Checked.ofResult

    /// `config` with one override `key=value` applied (see `ModelConfig.withOverride`), or the reason it is refused.
    static member WithOverride(key: string, value: string, config: ModelConfig) =
        ModelConfig.withOverride key value config |> Checked.ofResult

    /// `config` with KEY=VALUE overrides applied in order (d-ff after everything else), or the first reason one is
    /// refused.
    static member WithOverrides(overrides: IEnumerable<KeyValuePair<string, string>>, config: ModelConfig) =
        ModelConfig.withOverrides [ for kv in overrides -> kv.Key, kv.Value ] config
        |> Checked.ofResult

    /// `config` if its sizes are consistent (all > 0, width divisible by heads, heads by kv-heads...), or the reason.
    static member Validate(config: ModelConfig) =
        ModelConfig.validate config |> Checked.ofResult

    /// The override keys, as text for messages.
    static member OverrideKeys = ModelConfig.overrideKeys

    /// The attention shape (width, heads, kv-heads) of `config`.
    static member Attention(config: ModelConfig) = ModelConfig.attention config

    /// Every parameter's state-dict name and shape, in order.
    static member Parameters(config: ModelConfig) : IReadOnlyList<KeyValuePair<string, int64[]>> =
        ModelConfig.parameters config
        |> List.map (fun p -> KeyValuePair(p.Name, Array.ofList p.Shape))
        |> readOnly

    /// Whether a parameter is a residual projection (GPT-2's scaled initialization).
    static member IsResidualProjection(name: string) = ModelConfig.isResidualProjection name

/// Optimizer kinds (OptimizerKind.fs) for C#.
[<AbstractClass; Sealed>]
type internal OptimizerKinds =
    /// Whose state the optimizer keeps and whose update it runs (Blockwise variants: their base's).
    static member Family(kind: OptimizerKind) = OptimizerKind.family kind
    /// Whether each block gets its own peak LR (the plain optimizers give every block the base LR).
    static member IsBlockwise(kind: OptimizerKind) = OptimizerKind.isBlockwise kind

    /// The betas and weight decay a family's recipe uses when none are set.
    static member Recipe(family: OptimizerFamily) = OptimizerKind.recipe family

/// Muon's parameter split and constants (OptimizerKind.fs) for C#.
[<AbstractClass; Sealed>]
type internal MuonRules =
    /// Whether Muon orthogonalizes a parameter of this block and shape.
    static member Orthogonalizes(block: BlockKind, shape: int64[]) =
        Muon.orthogonalizes block (List.ofArray shape)

    /// 0.2 sqrt(max(rows, cols)).
    static member Scale(rows: int64, cols: int64) = Muon.scale rows cols
    /// Newton-Schulz steps per update: 5.
    static member Steps = Muon.steps
    /// The quintic Newton-Schulz coefficients (a, b, c) = (3.4445, -4.7750, 2.0315).
    static member Coefficients = Muon.coefficients
    /// Added to the Frobenius norm before dividing by it: 1e-7.
    static member NormEps = Muon.normEps
    /// Muon's Nesterov momentum: 0.95.
    static member Momentum = Muon.momentum

/// The numeric option ranges (OptionRanges.fs) for C#.
[<AbstractClass; Sealed>]
type internal RangeRules =
    /// The refusal of `value` for the flag `key` ("threads", "lr"), or null when it is in range (or the flag has
    /// no range).
    static member Check(key: string, value: float) : string =
        match OptionRanges.check key value with
        | Ok() -> null
        | Error e -> e

    /// The range as `--help` shows it, or null for a flag without one.
    static member Describe(key: string) : string =
        OptionRanges.tryFind key |> Option.map OptionRanges.describe |> Option.toObj

/// Memory estimates (MemoryEstimate.fs) for C#.
[<AbstractClass; Sealed>]
type internal MemoryRules =
    /// Training memory in bytes for `config` under an optimizer `family` at `precision`, `batch` sequences of `seqLen`
    /// tokens per pass (`mathAttention`: attention probabilities kept, as without a fused kernel); a batch or seqLen
    /// below 1 is refused.
    static member Estimate
        (
            config: ModelConfig,
            family: OptimizerFamily,
            precision: Precision,
            batch: int,
            seqLen: int,
            mathAttention: bool
        ) =
        MemoryEstimate.estimate config family precision batch seqLen mathAttention
        |> Checked.ofResult

    /// fp32 optimizer state per block.
    static member OptimizerStateBytesByBlock(config: ModelConfig, family: OptimizerFamily) =
        MemoryEstimate.optimizerStateBytesByBlock config family
        |> Checked.map dictionary

/// Block rules and the partition (Taxonomy.fs) for C#.
[<AbstractClass; Sealed>]
type internal BlockRuleTable =
    /// The built-in rules, first match wins.
    static member Defaults: IReadOnlyList<BlockRule> = readOnly BlockRule.defaults

    /// A rule sending a whole tensor to one block.
    static member Whole(pattern: string, kind: BlockKind) =
        {
            Pattern = pattern
            Assignment = Whole kind
        }

    /// A rule cutting a fused projection into equal parts along its output dimension, one block each.
    static member Fused(pattern: string, kinds: IEnumerable<BlockKind>) =
        {
            Pattern = pattern
            Assignment = Fused(List.ofSeq kinds)
        }

    /// User rules ahead of `rules` (the first match wins).
    static member WithUserRules(userRules: IEnumerable<BlockRule>, rules: IEnumerable<BlockRule>) =
        BlockRule.withUserRules (List.ofSeq userRules) (List.ofSeq rules) |> readOnly

    /// The rules of a rule file (`pattern=block` a line, `#` comments).
    static member ParseMany(source: string, text: string) =
        BlockRule.parseMany source text |> Checked.map readOnly

    /// Places every parameter (name, shape) by the rules, or the reason listing every unmatched name.
    static member Partition(rules: IEnumerable<BlockRule>, parameters: IEnumerable<KeyValuePair<string, int64[]>>) =
        let infos =
            [
                for kv in parameters ->
                    {
                        Name = kv.Key
                        Shape = List.ofArray kv.Value
                    }
            ]

        Taxonomy.partition (List.ofSeq rules) infos |> Checked.map readOnly

    /// The names no rule matches, in order.
    static member Unmatched(rules: IEnumerable<BlockRule>, names: IEnumerable<string>) : IReadOnlyList<string> =
        let rules = List.ofSeq rules

        names
        |> Seq.filter (fun name -> (Taxonomy.classify rules name).IsNone)
        |> List.ofSeq
        |> readOnly

    /// Parameter count per block (blocks with no parameters are absent).
    static member CountsByBlock(placed: IEnumerable<PlacedParameter>) =
        Taxonomy.countsByBlock (List.ofSeq placed) |> dictionary

    /// Where a placed parameter's coordinates go: (block, dim, start, length) slices; dim -1 is the whole tensor.
    static member Slices(placed: PlacedParameter) : IReadOnlyList<struct (BlockKind * int * int64 * int64)> =
        match placed.Placement with
        | WholeTensor kind -> readOnly [ struct (kind, -1, 0L, Taxonomy.numel placed.Parameter.Shape) ]
        | Slices(dim, parts) ->
            parts
            |> List.map (fun (start, length, kind) -> struct (kind, dim, start, length))
            |> readOnly

/// The schedule algebra (Schedule.fs) for C#.
[<AbstractClass; Sealed>]
type internal ScheduleRules =
    /// The schedule of a named kind: peak `baseLr`, floor `floorLr`, `warmupSteps` of `totalSteps` (`alphaWarmup`: a
    /// block's warmup is its ratio times longer). Not validated: see `Validate`.
    static member Spec
        (kind: LrSchedule, baseLr: float, floorLr: float, warmupSteps: int, totalSteps: int, alphaWarmup: bool)
        =
        {
            Kind = Schedule.kindOf kind
            BaseLr = baseLr
            FloorLr = floorLr
            WarmupSteps = warmupSteps
            TotalSteps = totalSteps
            AlphaWarmup = alphaWarmup
        }

    /// The LR of a block with this peak ratio at every step.
    static member ForBlock(spec: ScheduleSpec, ratio: float) : Func<int, float> =
        let schedule = Schedule.forBlock spec ratio
        Func<int, float>(schedule)

    /// Checks the spec against the ratios it will be used with: the spec, or the field a refusal is about and why.
    static member Validate
        (ratios: IEnumerable<float>, spec: ScheduleSpec)
        : struct (Checked<ScheduleSpec> * ScheduleField) =
        match Schedule.validateFields (List.ofSeq ratios) spec with
        | Ok valid -> struct (Checked.ofResult (Ok valid), ScheduleField.Kind)
        | Error(field, reason) -> struct (Checked.ofResult (Error reason), field)

    /// The default warmup: 2% of the run, at least one step.
    static member DefaultWarmup(totalSteps: int) = Schedule.defaultWarmup totalSteps
    /// The official recipe's floor: baseLr / 20.
    static member OfficialFloor(baseLr: float) = Schedule.officialFloor baseLr

    /// Steps worth printing: start, end of warmup, `points` evenly spaced steps, the last step, and T.
    static member Milestones(spec: ScheduleSpec, points: int) : IReadOnlyList<int> =
        Schedule.milestones spec points |> readOnly

/// Fixed ratios (Ratios.fs) for C#.
[<AbstractClass; Sealed>]
type internal RatioRules =
    /// The paper's ratios: Norm 1, VO 4, FFN 6, QK 8, Embedding 10, PositionEmbedding 1.
    static member Paper = Ratios.paper
    /// Every block at the base LR: exactly AdamW.
    static member Uniform = Ratios.uniform
    /// Reads a preset (`paper`, `uniform`), a map `emb=10,qk=8,...`, or a preset with overrides (`paper,head=10`); or
    /// the reason it cannot.
    static member Parse(text: string) = Ratios.parse text |> Checked.ofResult

    /// `spec` if every ratio is finite and > 0 and, with a tied head, an explicit head ratio equals the embedding's;
    /// otherwise the reason.
    static member Validate(tiedHead: bool, spec: RatioSpec) =
        Ratios.validate tiedHead spec |> Checked.ofResult

    /// The ratio of the block `kind` (`tiedHead`: the output head is the embedding tensor).
    static member RatioOf(tiedHead: bool, spec: RatioSpec, kind: BlockKind) = Ratios.ratioOf tiedHead spec kind
    /// The text `Parse` reads back: `emb=10,pe=1,qk=8,vo=4,ffn=6,norm=1[,head=H]`.
    static member Format(spec: RatioSpec) = Ratios.format spec

/// Windows and data order (Sampling.fs) for C#.
[<AbstractClass; Sealed>]
type internal SamplingRules =
    /// The windows of seq_len + 1 tokens in shards of the given token counts, or the reason when no window fits
    /// anywhere.
    static member Layout(seqLen: int, shardTokens: IEnumerable<int64>) =
        Sampling.layout seqLen (List.ofSeq shardTokens) |> Checked.ofResult

    /// (shard, first token) of a window.
    static member Locate(layout: WindowLayout, index: int64) : struct (int * int64) =
        let shard, start = Sampling.locate layout index
        struct (shard, start)

    /// The order of `count` windows in epoch `epoch`: a Fisher-Yates shuffle seeded by (`seed`, `epoch`).
    static member Permutation(seed: uint64, epoch: int, count: int64) = Sampling.permutation seed epoch count

    /// The next `count` windows from `position` and the position after them.
    static member Take(permutationOf: Func<int, int64[]>, total: int64, position: SamplerPosition, count: int) =
        let windows, next = Sampling.take permutationOf.Invoke total position count
        struct (windows, next)

    /// The first `count` non-overlapping windows, in order (as llm.c validates), the same every time.
    static member ValidationWindows(layout: WindowLayout, count: int64) = Sampling.validationWindows layout count

    /// The chunks of one block of a streamed corpus that go to val.
    static member ChooseValChunksInBlock(seed: uint64, block: int, chunkTokens: int64[], targetTokens: int64) =
        Sampling.chooseValChunksInBlock seed block chunkTokens targetTokens
        |> Checked.map (fun chosen -> HashSet<int>(chosen) :> IReadOnlySet<int>)

/// Adam-mini's partition (AdamMiniPartition.fs) and weight decay (WeightDecayPolicy.fs) for C#.
[<AbstractClass; Sealed>]
type internal AdamMiniRules =
    /// The attention shape if Adam-mini can cut Q and K into its heads, or the reason.
    static member ValidateAttention(attention: AttentionShape) =
        AdamMiniPartition.validateAttention attention |> Checked.ofResult

    /// The v-blocks of a parameter that lies whole in one block.
    static member Plan(attention: AttentionShape, name: string, shape: int64[], kind: BlockKind) =
        let placed =
            {
                Parameter =
                    {
                        Name = name
                        Shape = List.ofArray shape
                    }
                Placement = WholeTensor kind
            }

        AdamMiniPartition.plan attention placed |> Checked.ofResult

    /// The number of second-moment scalars a plan keeps.
    static member VCount(plan: AdamMiniPlan) = AdamMiniPartition.vCount plan

    /// Several plans laid end to end in one flat buffer, adjacent equal block sizes merged.
    static member Concat(plans: IEnumerable<AdamMiniPlan>) : IReadOnlyList<VSegment> =
        AdamMiniPartition.concat (List.ofSeq plans) |> readOnly

    /// Whether a parameter decays under a policy.
    static member Decays(policy: WeightDecayPolicy, name: string, shape: int64[]) =
        WeightDecay.applies policy name (List.ofArray shape)

/// The name tables of the closed choices (Names.fs) for C#: each as (name, value) pairs.
[<AbstractClass; Sealed>]
type internal NameTables =
    static member private Pairs(table: (string * 'T) list) : IReadOnlyList<KeyValuePair<string, 'T>> =
        table |> List.map KeyValuePair |> readOnly

    /// The optimizer names ("adamw", "blockwise-adamw", ...).
    static member Optimizers = NameTables.Pairs Names.optimizers
    /// The schedule names ("cosine", "linear", "wsd", ...).
    static member Schedules = NameTables.Pairs Names.schedules
    /// The precision names ("fp32", "tf32", "bf16-mixed", alias "bf16").
    static member Precisions = NameTables.Pairs Names.precisions
    /// The weight-decay policy names ("all", "matrices" or "no-1d", "adam-mini").
    static member WeightDecayPolicies = NameTables.Pairs Names.weightDecayPolicies
    /// The architecture names ("gpt2", "llama").
    static member Architectures = NameTables.Pairs Names.architectures
    /// The Newton-Schulz precision names ("auto", "fp32", "bf16").
    static member NewtonSchulzPrecisions = NameTables.Pairs Names.newtonSchulzPrecisions

    /// `text` (any case) as a value of the table; the reason names `what` and lists the names.
    static member Parse(what: string, table: IReadOnlyList<KeyValuePair<string, 'T>>, text: string) =
        Names.parse what [ for kv in table -> kv.Key, kv.Value ] text
        |> Checked.ofResult

    /// The name written back for `value` (the first of its names in `table`).
    static member Format(table: IReadOnlyList<KeyValuePair<string, 'T>>, value: 'T) =
        Names.format [ for kv in table -> kv.Key, kv.Value ] value

    /// The names written back, one per value.
    static member Canonical(table: IReadOnlyList<KeyValuePair<string, 'T>>) : IReadOnlyList<string> =
        Names.canonical [ for kv in table -> kv.Key, kv.Value ] |> readOnly

/// Model FLOPs (Flops.fs) for C#.
[<AbstractClass; Sealed>]
type internal FlopsRules =
    /// Training FLOPs per token of `config` at `seqLen`: 6 N for the matmuls plus 12 L H Q T for attention, forward and
    /// backward.
    static member PerToken(config: ModelConfig, seqLen: int) = Flops.perToken config seqLen

    /// Dense peak TFLOP/s by GPU name: (bf16, tf32, fp32).
    static member PeakTflops: IReadOnlyDictionary<string, struct (float * float * float)> =
        Flops.peakTflops
        |> List.map (fun (name, (bf16, tf32, fp32)) -> name, struct (bf16, tf32, fp32))
        |> dictionary

/// Sharpness bookkeeping (Sharpness.fs) and the speedup measure (Speedup.fs) for C#.
[<AbstractClass; Sealed>]
type internal SharpnessRules =
    /// The paper's proxy from one mini-batch of B sequences: B x ||grad_b L_B||^2 / #params(b).
    static member Proxy(batchSize: int, gradientSquaredNorm: float, parameters: int64) =
        Sharpness.proxy batchSize gradientSquaredNorm parameters

    /// Mean and standard error (sample standard deviation / sqrt n; 0 for one sample).
    static member Summarize(samples: IEnumerable<float>) =
        Sharpness.summarize (List.ofSeq samples)

    /// The measured order of the paper's five blocks, flattest first, and whether it is the paper's.
    static member Order(estimates: IEnumerable<KeyValuePair<BlockKind, float>>) =
        let order = Sharpness.order [ for kv in estimates -> kv.Key, kv.Value ]
        struct (readOnly order, Sharpness.matchesPaper order)

    /// The paper's speedup of a candidate run of N steps against AdamW(2N) (Speedup.fs), or null.
    static member Speedup
        (adamw2N: IEnumerable<KeyValuePair<int, float>>, candidate: IEnumerable<KeyValuePair<int, float>>, n: int)
        =
        Speedup.measure [ for kv in adamw2N -> kv.Key, kv.Value ] [ for kv in candidate -> kv.Key, kv.Value ] n
        |> Option.toNullable
