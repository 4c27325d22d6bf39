using System.Reflection;
using System.Runtime.CompilerServices;
using System.Xml.Linq;
using Microsoft.FSharp.Core;
using Xunit.Abstractions;

namespace BlockwiseLR.Tests;

/// Every public type and member of the packed libraries has an XML doc: the public and protected surface, found by
/// reflection, against the member ids of the XML doc file the build writes beside each assembly (the C# library
/// also fails its build on a missing doc, CS1591; the F# compiler has no such check, so this is the core's).
public class PublicApiDocsTests(ITestOutputHelper output)
{
    static readonly Assembly Library = typeof(BlockRatios).Assembly;
    static readonly Assembly Core = Assembly.Load(new AssemblyName("BlockwiseLR.Core"));

    [Fact]
    public void Every_public_member_of_BlockwiseLR_has_an_xml_doc() => AllDocumented(Library);

    [Fact]
    public void Every_public_member_of_BlockwiseLR_Core_has_an_xml_doc() => AllDocumented(Core);

    void AllDocumented(Assembly assembly)
    {
        var documented = DocumentedIds(assembly);
        var members = PublicMemberIds(assembly);
        // The F# compiler writes a [<Literal>] (a const field) as P:, not F:.
        var missing = members
            .Where(id => !documented.Contains(id) && !(id.StartsWith("F:") && documented.Contains("P:" + id[2..])))
            .Order(StringComparer.Ordinal)
            .ToList();
        output.WriteLine(
            $"{assembly.GetName().Name}: {members.Count - missing.Count} of {members.Count} public members documented"
        );
        Assert.True(members.Count > 50, $"only {members.Count} public members found: the walk is broken");
        Assert.True(
            missing.Count == 0,
            $"{missing.Count} public members of {assembly.GetName().Name} have no XML doc:\n"
                + string.Join("\n", missing)
        );
    }

    /// The member ids in the XML doc file beside the assembly (BlockwiseLR.xml beside BlockwiseLR.dll).
    static HashSet<string> DocumentedIds(Assembly assembly)
    {
        var file = Path.ChangeExtension(assembly.Location, ".xml");
        Assert.True(File.Exists(file), $"{file}: no XML doc file (GenerateDocumentationFile)");
        return XDocument
            .Load(file)
            .Descendants("member")
            .Select(m => (string)m.Attribute("name")!)
            .ToHashSet(StringComparer.Ordinal);
    }

    /// The doc ids of every public type and of its public and protected members, as a user sees them: accessors,
    /// compiler-generated members (records' Equals, F# unions' Tag and IsCase, ...), enums' value__,
    /// parameterless constructors (the implicit default constructor has no source to document) and F# records'
    /// constructors left out.
    /// An F# union case is documented as its own type id (T:Union.Case), so its New/property stands for that.
    internal static List<string> PublicMemberIds(Assembly assembly)
    {
        var ids = new List<string>();
        foreach (var type in assembly.GetTypes().Where(Visible))
        {
            if (IsFSharpUnionCaseClass(type))
                continue;
            ids.Add("T:" + TypeName(type));
            if (typeof(Delegate).IsAssignableFrom(type))
                continue;
            const BindingFlags flags =
                BindingFlags.Public
                | BindingFlags.NonPublic
                | BindingFlags.Instance
                | BindingFlags.Static
                | BindingFlags.DeclaredOnly;
            foreach (var member in type.GetMembers(flags))
            {
                if (UnionCase(member) is { } unionCase)
                {
                    ids.Add($"T:{TypeName(type)}.{unionCase}");
                    continue;
                }
                if (member is Type || Generated(member) || member is ConstructorInfo && IsFSharpRecord(type))
                    continue;
                var id = member switch
                {
                    FieldInfo f when Seen(f) && !f.IsSpecialName => "F:" + TypeName(type) + "." + f.Name,
                    PropertyInfo p when p.GetAccessors(true).Any(Seen) => "P:"
                        + TypeName(type)
                        + "."
                        + p.Name
                        + Parameters(p.GetIndexParameters()),
                    EventInfo e when e.AddMethod is { } add && Seen(add) => "E:" + TypeName(type) + "." + e.Name,
                    ConstructorInfo c when Seen(c) && !c.IsStatic && c.GetParameters().Length > 0 => "M:"
                        + TypeName(type)
                        + ".#ctor"
                        + Parameters(c.GetParameters()),
                    MethodInfo m
                        when Seen(m) && (!m.IsSpecialName || m.Name.StartsWith("op_", StringComparison.Ordinal)) =>
                        MethodId(type, m),
                    _ => null,
                };
                if (id is not null)
                    ids.Add(id);
            }
        }
        return ids.Distinct().ToList();
    }

    static bool Visible(Type type) =>
        type.IsPublic
        || (type.IsNestedPublic || type.IsNestedFamily || type.IsNestedFamORAssem) && Visible(type.DeclaringType!);

    static bool Seen(MethodBase m) => m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly;

    static bool Seen(FieldInfo f) => f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly;

    static bool Generated(MemberInfo member) =>
        member.IsDefined(typeof(CompilerGeneratedAttribute), false)
        || member.IsDefined(typeof(System.Diagnostics.DebuggerNonUserCodeAttribute), false)
            && !member.IsDefined(typeof(CompilationMappingAttribute), false);

    /// The case an F# union's case member stands for: NewCase(...) for a case with fields, get_Case for one
    /// without (both marked UnionCase by the compiler).
    static string? UnionCase(MemberInfo member) =>
        member is MethodInfo method
        && method.GetCustomAttribute<CompilationMappingAttribute>() is { } mapping
        && (mapping.SourceConstructFlags & SourceConstructFlags.KindMask) == SourceConstructFlags.UnionCase
            ? method.Name.StartsWith("New", StringComparison.Ordinal)
                ? method.Name["New".Length..]
                : method.Name.StartsWith("get_", StringComparison.Ordinal)
                    ? method.Name["get_".Length..]
                    : method.Name
            : null;

    /// An F# record: its constructor is the compiler's, from the fields (documented one by one).
    static bool IsFSharpRecord(Type type) =>
        type.GetCustomAttribute<CompilationMappingAttribute>() is { } mapping
        && (mapping.SourceConstructFlags & SourceConstructFlags.KindMask) == SourceConstructFlags.RecordType;

    /// The nested class the F# compiler makes for a union case with fields (documented as the case, T:Union.Case).
    static bool IsFSharpUnionCaseClass(Type type) =>
        type.DeclaringType is { } union
        && union.GetCustomAttribute<CompilationMappingAttribute>() is { } mapping
        && (mapping.SourceConstructFlags & SourceConstructFlags.KindMask) == SourceConstructFlags.SumType;

    static string MethodId(Type type, MethodInfo m)
    {
        var id = "M:" + TypeName(type) + "." + m.Name.Replace('.', '#');
        if (m.IsGenericMethodDefinition)
            id += "``" + m.GetGenericArguments().Length;
        id += Parameters(m.GetParameters());
        if (m.Name is "op_Implicit" or "op_Explicit")
            id += "~" + ParameterType(m.ReturnType);
        return id;
    }

    static string Parameters(ParameterInfo[] parameters) =>
        parameters.Length == 0
            ? ""
            : "(" + string.Join(",", parameters.Select(p => ParameterType(p.ParameterType))) + ")";

    /// A type's name in a doc id: namespace, declaring types and the name, joined by dots ("`N" on generic ones).
    static string TypeName(Type type) =>
        type.DeclaringType is { } outer ? TypeName(outer) + "." + type.Name
        : string.IsNullOrEmpty(type.Namespace) ? type.Name
        : type.Namespace + "." + type.Name;

    /// A parameter's type in a doc id: generic arguments in braces, `N / ``N for type / method parameters.
    static string ParameterType(Type type)
    {
        if (type.IsByRef)
            return ParameterType(type.GetElementType()!) + "@";
        if (type.IsPointer)
            return ParameterType(type.GetElementType()!) + "*";
        if (type.IsArray)
            return ParameterType(type.GetElementType()!)
                + (
                    type.GetArrayRank() == 1
                        ? "[]"
                        : "[" + string.Join(",", Enumerable.Repeat("0:", type.GetArrayRank())) + "]"
                );
        if (type.IsGenericParameter)
            return (type.DeclaringMethod is null ? "`" : "``") + type.GenericParameterPosition;
        if (!type.IsGenericType)
            return TypeName(type);
        var arguments = type.GetGenericArguments();
        string Named(Type t, ref int used)
        {
            var prefix =
                t.DeclaringType is { } outer ? Named(outer, ref used) + "."
                : string.IsNullOrEmpty(t.Namespace) ? ""
                : t.Namespace + ".";
            var tick = t.Name.IndexOf('`');
            if (tick < 0)
                return prefix + t.Name;
            var count = int.Parse(t.Name[(tick + 1)..]);
            var mine = arguments.Skip(used).Take(count).Select(ParameterType);
            used += count;
            return prefix + t.Name[..tick] + "{" + string.Join(",", mine) + "}";
        }
        var used = 0;
        return Named(type, ref used);
    }
}
