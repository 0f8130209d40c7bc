"""Kernel registry for ahead-of-time compiles: one `KernelSpec` per Triton kernel, per op module."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Every op with Triton kernels has a `wm_bench.kernels.<op>.specs` module exposing KERNEL_SPECS.
# Covering a new op = one entry here; covering a new kernel = one entry in its specs module.
SPEC_MODULES: tuple[str, ...] = (
    "wm_bench.kernels.rope.specs",
    "wm_bench.kernels.ssd.specs",
    "wm_bench.kernels.attention.specs",
    "wm_bench.kernels.cdmoe.specs",
)

INSTRUCTIONS = ("wgmma", "tma", "mma")  # what a spec may say its PTX must contain
_SPEC_KEYS = {
    "name",
    "fn",
    "signature",
    "cases",
    "constexprs",
    "configs",
    "instructions",
    "intended",
    "aligned",
}


@dataclass(frozen=True)
class CompileConfig:
    """One launch configuration: what `triton.Config` holds (warps, stages, block constexprs).

    Args:
        num_warps: warps per program.
        num_stages: software-pipelining depth.
        constexprs: block-size constexprs of this config (e.g. {"BLOCK_M": 64}).
        pickable: False for a config the autotuner can never choose (pruned); a spill there is
            reported but does not fail the check.
    """

    num_warps: int = 4
    num_stages: int = 3
    constexprs: Mapping[str, Any] = field(default_factory=dict)
    pickable: bool = True

    def label(self) -> str:
        """Short text for tables, e.g. `w8 s3 BLOCK_M=64`."""
        parts = [f"w{self.num_warps}", f"s{self.num_stages}"]
        parts += [f"{k}={_short(v)}" for k, v in self.constexprs.items()]
        return " ".join(parts) + ("" if self.pickable else " (pruned)")


@dataclass(frozen=True)
class KernelSpec:
    """Everything needed to compile one Triton kernel for sm_90a without a GPU.

    Args:
        name: unique kernel name in the registry (e.g. "rope_fwd_bf16").
        fn: the `@triton.jit` function (autotune/heuristics wrappers are unwrapped).
        signature: non-constexpr argument → Triton type ("*bf16", "*fp32", "i32", "i64", "fp32").
            Constexpr arguments may be left out (they are filled in as "constexpr").
        cases: representative constexpr values (head dims, chunk sizes), one dict per case.
        configs: every autotune config the kernel ships (the default launch if it has none).
        instructions: what its PTX must contain, from INSTRUCTIONS (a matrix kernel: ("wgmma",)).
        aligned: arguments the runtime sees as 16-divisible (pointers from torch, strides that are
            multiples of 16 at representative shapes); None = every pointer argument and every
            argument named stride*. This changes code generation a lot (vector widths, registers).
        module: the specs module it came from (filled in by `collect`).
        case_names: optional labels of the cases (a dict of named cases sets them).
    """

    name: str
    fn: Any
    signature: Mapping[str, str]
    cases: tuple[Mapping[str, Any], ...] = ({},)
    configs: tuple[CompileConfig, ...] = (CompileConfig(),)
    instructions: tuple[str, ...] = ()
    aligned: tuple[str, ...] | None = None
    module: str = ""
    case_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        bad = [i for i in self.instructions if i not in INSTRUCTIONS]
        if bad:
            raise ValueError(
                f"kernel {self.name!r}: instructions={bad}; valid: {list(INSTRUCTIONS)}"
            )
        if not self.cases or not self.configs:
            raise ValueError(f"kernel {self.name!r}: needs at least one case and one config")

    def param_names(self) -> list[str]:
        """The kernel's argument names in order."""
        return list(self.fn.arg_names)

    def full_signature(self) -> dict[str, str]:
        """The signature with every argument in order, constexprs marked "constexpr".

        Returns:
            arg name → Triton type string, in the kernel's argument order.
        Raises:
            ValueError: a non-constexpr argument has no type, or the signature names an unknown one.
        """
        sig: dict[str, str] = {}
        constexpr = _constexpr_params(self.fn)
        unknown = sorted(set(self.signature) - set(self.param_names()))
        if unknown:
            raise ValueError(
                f"kernel {self.name!r}: signature names {unknown}, not arguments of "
                f"{self.fn.__name__}; valid: {self.param_names()}"
            )
        for name in self.param_names():
            if name in self.signature:
                sig[name] = self.signature[name]
            elif name in constexpr:
                sig[name] = "constexpr"
            else:
                raise ValueError(
                    f"kernel {self.name!r}: argument {name!r} has no type in the signature "
                    "(e.g. '*bf16', 'i32')"
                )
        return sig

    def signature_for(self, case: Mapping[str, Any], config: CompileConfig) -> dict[str, str]:
        """The signature of one (case, config): an int argument the case gives a value to is
        specialised to a constexpr, as Triton's launcher does for ints equal to 1 (unit strides
        there let loads vectorise)."""
        given = {**dict(case), **dict(config.constexprs)}
        return {n: ("constexpr" if n in given else t) for n, t in self.full_signature().items()}

    def constexprs(self, case: Mapping[str, Any], config: CompileConfig) -> dict[str, Any]:
        """Constexpr values for one (case, config): case ∪ config ∪ the function's defaults.

        Raises:
            ValueError: a constexpr argument has no value and no default.
        """
        values = {**_constexpr_defaults(self.fn), **dict(case), **dict(config.constexprs)}
        sig = self.signature_for(case, config)
        missing = [n for n, t in sig.items() if t == "constexpr" and n not in values]
        if missing:
            raise ValueError(
                f"kernel {self.name!r}: constexpr arguments {missing} have no value in the case "
                f"{dict(case)} or config {config.label()!r}"
            )
        return {n: values[n] for n in sig if sig[n] == "constexpr"}

    def attrs(
        self, case: Mapping[str, Any] | None = None, config: CompileConfig | None = None
    ) -> dict[tuple[int, ...], list[list[Any]]]:
        """ASTSource attrs: tt.divisibility=16 on the aligned (non-constexpr) arguments."""
        sig = self.signature_for(case or {}, config or CompileConfig())
        names = list(sig)
        chosen = (
            [n for n, t in sig.items() if t.startswith("*") or n.startswith("stride")]
            if self.aligned is None
            else list(self.aligned)
        )
        unknown = [n for n in chosen if n not in names]
        if unknown:
            raise ValueError(f"kernel {self.name!r}: aligned names unknown arguments {unknown}")
        return {
            (names.index(n),): [["tt.divisibility", 16]] for n in chosen if sig[n] != "constexpr"
        }


def _short(v: Any) -> str:
    return str(v).replace("triton.language.", "tl.")


def _constexpr_params(fn: Any) -> set[str]:
    return {p.name for p in getattr(fn, "params", []) if getattr(p, "is_constexpr", False)}


def _constexpr_defaults(fn: Any) -> dict[str, Any]:
    sig = inspect.signature(fn.fn)
    return {
        n: p.default
        for n, p in sig.parameters.items()
        if n in _constexpr_params(fn) and p.default is not inspect.Parameter.empty
    }


def unwrap(fn: Any) -> tuple[Any, list[Any]]:
    """Strip @triton.autotune / @triton.heuristics wrappers.

    Returns:
        (the JITFunction, the autotuner's configs or [] when there is no autotuner).
    """
    configs: list[Any] = []
    while not hasattr(fn, "arg_names") or not hasattr(fn, "params"):
        if hasattr(fn, "configs") and not configs:
            configs = list(fn.configs)
        if not hasattr(fn, "fn"):
            raise ValueError(f"{fn!r} is not a @triton.jit function")
        fn = fn.fn
    return fn, configs


def as_config(obj: Any) -> CompileConfig:
    """A CompileConfig from a CompileConfig, a `triton.Config`, or a dict with num_warps etc."""
    if isinstance(obj, CompileConfig):
        return obj
    if hasattr(obj, "kwargs") and hasattr(obj, "num_warps"):  # triton.Config
        return CompileConfig(
            num_warps=int(obj.num_warps),
            num_stages=int(getattr(obj, "num_stages", 3) or 3),
            constexprs=dict(obj.kwargs),
        )
    if isinstance(obj, Mapping):
        d = dict(obj)
        return CompileConfig(
            num_warps=int(d.pop("num_warps", 4)),
            num_stages=int(d.pop("num_stages", 3)),
            pickable=bool(d.pop("pickable", True)),
            constexprs=dict(d.pop("constexprs", {})) | d,
        )
    raise ValueError(f"config {obj!r}: expected CompileConfig, triton.Config or dict")


def as_spec(obj: Any, module: str = "") -> KernelSpec:
    """Normalise one KERNEL_SPECS entry: a KernelSpec, a dict, or any object with the same
    attributes (an op's own spec dataclass).

    Aliases: "constexprs" for cases, "intended" for instructions. `cases` may be a dict of named
    cases. `configs` may be triton.Config objects or dicts; when absent, an @triton.autotune
    wrapper's configs are used.
    """
    if isinstance(obj, KernelSpec):
        fn, tuned = unwrap(obj.fn)
        configs = obj.configs if obj.configs != (CompileConfig(),) or not tuned else tuned
        return KernelSpec(
            name=obj.name,
            fn=fn,
            signature=dict(obj.signature),
            cases=tuple(obj.cases),
            configs=tuple(as_config(c) for c in configs),
            instructions=tuple(obj.instructions),
            aligned=obj.aligned,
            module=obj.module or module,
            case_names=obj.case_names,
        )
    if not isinstance(obj, Mapping) and hasattr(obj, "fn") and hasattr(obj, "signature"):
        obj = {k: getattr(obj, k) for k in _SPEC_KEYS if hasattr(obj, k)}  # another dataclass
    if not isinstance(obj, Mapping):
        raise ValueError(f"KERNEL_SPECS entry {obj!r}: expected KernelSpec or dict")
    unknown = sorted(set(obj) - _SPEC_KEYS)
    if unknown:
        raise ValueError(f"KERNEL_SPECS entry keys {unknown}; valid: {sorted(_SPEC_KEYS)}")
    fn, tuned = unwrap(obj["fn"])
    cases = obj.get("cases", obj.get("constexprs", [{}])) or [{}]
    names: tuple[str, ...] = ()
    if isinstance(cases, Mapping):  # named cases: {"cheems_p128": {...}, ...}
        names, cases = tuple(map(str, cases)), list(cases.values())
    configs = obj.get("configs") or tuned or [CompileConfig()]
    aligned = obj.get("aligned")
    return KernelSpec(
        name=str(obj.get("name", fn.__name__)),
        fn=fn,
        signature=dict(obj["signature"]),
        cases=tuple(dict(c) for c in cases),
        configs=tuple(as_config(c) for c in configs),
        instructions=tuple(obj.get("instructions", obj.get("intended", ()))),
        aligned=None if aligned is None else tuple(aligned),
        module=module,
        case_names=names,
    )


def collect(
    modules: Iterable[str] = SPEC_MODULES,
) -> tuple[list[KernelSpec], list[tuple[str, str]]]:
    """Import each specs module and gather its KERNEL_SPECS.

    Args:
        modules: dotted module names, each exposing KERNEL_SPECS (a list of specs).
    Returns:
        (specs, errors): errors are (module, message) for modules that failed to import or hold
        an invalid entry; the other modules' specs are still returned.
    """
    specs: list[KernelSpec] = []
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    for mod_name in modules:
        try:
            mod = importlib.import_module(mod_name)
            entries = mod.KERNEL_SPECS
            found = [as_spec(e, mod_name) for e in entries]
            for s in found:
                s.full_signature()
                if s.name in seen:
                    raise ValueError(f"duplicate kernel name {s.name!r}")
                seen.add(s.name)
        except Exception as e:  # reported in the table, never a crash of the whole command
            errors.append((mod_name, f"{type(e).__name__}: {e}"))
            continue
        specs.extend(found)
    return specs, errors
