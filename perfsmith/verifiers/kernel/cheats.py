"""Static checks for kernel candidates: tricks that pass for a fast kernel without being one.

After KernelBench's and others' published hacks. Each finding names the trick, so a
rejection can go back to the LLM. The checks read the candidate's syntax tree and the
kernel sources in its string constants; the dynamic checks (the torch namespace and the
reference patched, inputs mutated, outputs' dtype, shape, device and contiguity, stale
memory, results cached across calls) happen in the harness.
"""

from __future__ import annotations

import ast
import re

from perfsmith.verifiers.python.cheats import Finding, dotted_name

# torch's allocators: a kernel may have its outputs made for it, in Python or in C++
ALLOCATION = {
    "empty",
    "empty_like",
    "empty_strided",
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "full",
}
# torch functions a ModelNew may call: allocation, shapes, dtypes, no arithmetic.
ALLOWED_TORCH = ALLOCATION | {
    "full_like",
    "tensor",
    "as_tensor",
    "device",
    "dtype",
    "Size",
    "no_grad",
    "inference_mode",
    "is_tensor",
    "get_default_dtype",
    "manual_seed",
    "set_num_threads",
    "get_num_threads",
}
# Tensor methods that move no numbers through arithmetic: views, shapes, copies, devices.
ALLOWED_METHODS = {
    "contiguous",
    "view",
    "reshape",
    "size",
    "numel",
    "dim",
    "data_ptr",
    "to",
    "float",
    "half",
    "bfloat16",
    "double",
    "int",
    "long",
    "cuda",
    "cpu",
    "is_contiguous",
    "stride",
    "transpose",
    "permute",
    "unsqueeze",
    "squeeze",
    "flatten",
    "expand",
    "t",
    "new_empty",
    "new_zeros",
    "element_size",
    "item",
    "tolist",
    "get_device",
    "append",
    "extend",
    "items",
    "keys",
    "values",
    "get",
    "format",
    "join",
    "split",
    "register_buffer",
    "register_parameter",
    "parameters",
    "named_parameters",
    "clone",
    "copy_",
    "detach",
    "requires_grad_",
    "zero_",
    "fill_",
}
# nn modules that do the work themselves when called in forward.
COMPUTE_MODULES = re.compile(
    r"^(Linear|Bilinear|LazyLinear|Conv\w*|ConvTranspose\w*|\w*Norm\w*|\w*Pool\w*|"
    r"Embedding\w*|RNN|LSTM|GRU|Transformer\w*|MultiheadAttention|Softmax|LogSoftmax|ReLU|"
    r"GELU|SiLU|Tanh|Sigmoid|Dropout\w*|Sequential|Upsample\w*)$"
)
MODULES = {
    "gc": "searches the heap (can reach the reference's results)",
    "inspect": "walks the interpreter's frames",
    "ctypes": "uses ctypes (can patch anything in the process)",
    "threading": "starts threads (work can escape the clock)",
    "_thread": "starts threads",
    "concurrent": "starts threads or processes (work can escape the clock)",
    "multiprocessing": "starts processes (work can escape the clock)",
    "subprocess": "starts processes",
    "pickle": "reads pickles",
    "importlib": "imports modules by name (can reach the harness or the reference)",
    "builtins": "changes builtins",
    "atexit": "runs code after the harness finishes",
    "signal": "handles signals",
    "problem": "imports the reference problem",
}
CALLS = {
    ("sys", "_getframe"): "walks the interpreter's frames",
    ("os", "_exit"): "ends the process early (os._exit)",
    ("os", "fork"): "forks a process",
    ("os", "system"): "runs a shell command",
    ("torch", "cuda", "Stream"): "creates extra CUDA streams (work can escape the timed one)",
    ("torch", "cuda", "stream"): "switches CUDA streams (work can escape the timed one)",
}
# In kernel sources (C++/CUDA): torch operators doing the work, threads, streams.
CPP_ALLOWED = ALLOCATION | {
    "Tensor",
    "TensorOptions",
    "Device",
    "ScalarType",
    "IntArrayRef",
    "Half",
    "BFloat16",
    "cuda",
    "Scalar",
    "kFloat",
    "kFloat32",
    "kFloat16",
    "kHalf",
    "kBFloat16",
    "kDouble",
    "kInt",
    "kInt32",
    "kLong",
    "kInt64",
    "kBool",
    "kCUDA",
    "kCPU",
    "parallel_for",
    "get_num_threads",
    "TensorAccessor",
    "PackedTensorAccessor32",
    "PackedTensorAccessor64",
    "RestrictPtrTraits",
    "DefaultPtrTraits",
    "DeviceGuard",
    "OptionalDeviceGuard",
    "check",
    "vec",  # at::vec: SIMD registers (Vectorized<float>), header-only, no operator
}
CPP_CALL = re.compile(r"\b(?:torch|at)::(?:nn::functional::|native::|)(\w+)")
CPP_METHOD = re.compile(
    r"\.(matmul|mm|bmm|addmm|softmax|log_softmax|sum|mean|exp|relu|gelu|layer_norm|linear|"
    r"conv\w*|var|std|tanh|sigmoid|amax|amin|logsumexp|norm|cumsum|prod|clamp|pow|sqrt|"
    r"rsqrt|mul|add|sub|div|einsum)\s*\("
)
CPP_THREADS = re.compile(
    r"std::thread|std::async|pthread_create|cudaStreamCreate\w*|"
    r"cudaLaunchHostFunc|fork\s*\("
)
# SIMD vectors (at::vec::Vectorized, as torch's compiler writes them): their .exp(), .sqrt()
# are instructions on registers, not torch operators
VECTOR_DECLARED = re.compile(r"\b(?:Vectorized|VectorizedN|VecMask)\s*<[^;{}()]*?>\s*[&*]?\s*(\w+)")
AUTO_ASSIGNED = re.compile(r"\bauto\s+(\w+)\s*=\s*([^;]+);")
TENSOR_DECLARED = re.compile(r"\bTensor\s*[&*]?\s*(\w+)")
RECEIVER = re.compile(r"(\w+)\s*$")
SOURCE_HINT = re.compile(r"__global__|#include|PYBIND11|torch::|at::|\bvoid\b|\bfloat\b")


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local names of torch and torch.nn.functional (``import torch.nn.functional as F``)."""
    names = {"torch": "torch"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in ("torch", "torch.nn.functional"):
                    names[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module in ("torch", "torch.nn"):
            for a in node.names:
                if a.name == "functional":
                    names[a.asname or a.name] = "torch.nn.functional"
    return names


def _model_new(tree: ast.Module) -> ast.ClassDef | None:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "ModelNew":
            return node
    return None


def _compute_attributes(cls: ast.ClassDef) -> set[str]:
    """``self.X`` set to a compute nn module (``nn.Linear(...)``) anywhere in the class."""
    out: set[str] = set()
    for node in ast.walk(cls):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = dotted_name(node.value.func)
            if func and COMPUTE_MODULES.match(func[-1]) and func[0] in ("nn", "torch"):
                for target in node.targets:
                    dotted = dotted_name(target)
                    if len(dotted) == 2 and dotted[0] == "self":
                        out.add(dotted[1])
    return out


def _extensions(tree: ast.Module) -> set[str]:
    """Names bound to what ``load_inline``/``load`` returned (the compiled modules)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and dotted_name(node.value.func)[-1:] in (("load_inline",), ("load",))
        ):
            out.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return out


def _torch_work(cls: ast.ClassDef, aliases: dict[str, str], extensions: set[str]) -> list[Finding]:
    """Calls in ModelNew's methods (but __init__) that do the work with plain torch."""
    found: list[Finding] = []
    layers = _compute_attributes(cls)
    for method in cls.body:
        if not isinstance(method, ast.FunctionDef) or method.name == "__init__":
            continue
        for node in ast.walk(method):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
                found.append(Finding(node.lineno, "does the work with torch's @ (matmul)"))
            if isinstance(node, ast.Try):
                found.append(
                    Finding(
                        node.lineno,
                        "try/except in ModelNew (a fallback to torch when the kernel fails)",
                    )
                )
            if not isinstance(node, ast.Call):
                continue
            func = dotted_name(node.func)
            if not func:
                continue
            root = aliases.get(func[0])
            plain_torch = (
                root == "torch.nn.functional"
                or func[:3] == ("torch", "nn", "functional")
                or (root == "torch" and len(func) == 2 and func[1] not in ALLOWED_TORCH)
                or (root == "torch" and len(func) > 2 and func[1] in ("special", "linalg", "fft"))
            )
            if plain_torch:
                found.append(Finding(node.lineno, f"calls torch operator {'.'.join(func)}"))
            elif func[0] == "self" and len(func) == 2 and func[1] in layers:
                found.append(Finding(node.lineno, f"calls the torch module self.{func[1]}"))
            elif (
                isinstance(node.func, ast.Attribute)
                and len(func) >= 2
                and root is None
                and func[0] != "self"
                and func[0] not in extensions
                and node.func.attr not in ALLOWED_METHODS
                and _is_tensor_method(node.func.attr)
            ):
                found.append(Finding(node.lineno, f"calls tensor method .{node.func.attr}()"))
    return found


_TENSOR_WORK = {
    "softmax",
    "log_softmax",
    "matmul",
    "mm",
    "bmm",
    "sum",
    "mean",
    "exp",
    "log",
    "relu",
    "gelu",
    "sigmoid",
    "tanh",
    "max",
    "min",
    "amax",
    "amin",
    "var",
    "std",
    "norm",
    "pow",
    "sqrt",
    "rsqrt",
    "mul",
    "add",
    "sub",
    "div",
    "addmm",
    "baddbmm",
    "layer_norm",
    "cumsum",
    "prod",
    "clamp",
    "abs",
    "neg",
    "erf",
    "logsumexp",
    "argmax",
    "argmin",
    "sort",
    "topk",
    "masked_fill",
    "where",
    "conv2d",
    "linear",
    "einsum",
    "square",
    "relu_",
    "add_",
    "mul_",
    "div_",
    "sub_",
    "exp_",
    "clamp_",
}


def _is_tensor_method(name: str) -> bool:
    return name in _TENSOR_WORK


def _kernel_sources(tree: ast.Module) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and len(node.value) > 40
        and SOURCE_HINT.search(node.value)
    ]


def _vector_names(code: str) -> set[str]:
    """Names that hold SIMD vectors: declared as one, or ``auto`` from an ``at::vec``
    expression or from an expression that starts with a vector name; never a name also
    declared as a tensor."""
    tensors = set(TENSOR_DECLARED.findall(code))
    names = set(VECTOR_DECLARED.findall(code)) - tensors
    assigned = AUTO_ASSIGNED.findall(code)
    while True:
        before = len(names)
        for name, value in assigned:
            value = value.strip()
            # the first name of the expression (``decltype(tmp0)::blendv(...)``: tmp0)
            head = re.match(r"(?:decltype\s*\(\s*)?(\w+)", value)
            if name not in tensors and (
                value.startswith("at::vec::") or (head is not None and head.group(1) in names)
            ):
                names.add(name)
        if len(names) == before:
            return names


def _cpp_findings(tree: ast.Module) -> list[Finding]:
    found: list[Finding] = []
    for line, text in _kernel_sources(tree):
        code = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
        vectors = _vector_names(code)
        for match in CPP_CALL.finditer(code):
            if match.group(1) not in CPP_ALLOWED:
                at = line + code[: match.start()].count("\n")
                found.append(Finding(at, f"kernel source calls torch operator {match.group(0)}"))
        for match in CPP_METHOD.finditer(code):
            receiver = RECEIVER.search(code[: match.start()])
            if receiver is not None and receiver.group(1) in vectors:
                continue
            at = line + code[: match.start()].count("\n")
            found.append(
                Finding(
                    at,
                    f"kernel source calls tensor method .{match.group(1)}() (torch does the work)",
                )
            )
        for match in CPP_THREADS.finditer(code):
            at = line + code[: match.start()].count("\n")
            found.append(
                Finding(
                    at,
                    f"kernel source uses {match.group(0).strip('( ')} (work can escape the clock)",
                )
            )
    return found


def _runs_compiled_code(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = dotted_name(node.func)
            if func and func[-1] in ("load_inline", "load"):
                return True
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if dotted_name(target)[-1:] in (("jit",), ("autotune",)):
                    return True
    return False


def check_kernel_source(source: str) -> list[Finding]:
    """Findings for a candidate's source (empty: nothing seen)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [Finding(exc.lineno or 0, f"syntax error: {exc.msg}")]
    found: list[Finding] = []
    aliases = _aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top in MODULES:
                    found.append(Finding(node.lineno, MODULES[top]))
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in MODULES:
                found.append(Finding(node.lineno, MODULES[top]))
        elif isinstance(node, ast.Call):
            func = dotted_name(node.func)
            for dotted, trick in CALLS.items():
                if func[-len(dotted) :] == dotted:
                    found.append(Finding(node.lineno, trick))
            if func == ("Model",) or func[-1:] == ("Model",):
                found.append(Finding(node.lineno, "calls the reference Model"))
        elif isinstance(node, ast.Global):
            found.append(Finding(node.lineno, "rebinds module globals (state across calls)"))
    cls = _model_new(tree)
    if cls is not None:
        for base in cls.bases:
            if dotted_name(base)[-1:] == ("Model",):
                found.append(Finding(cls.lineno, "ModelNew inherits the reference Model"))
        found += _torch_work(cls, aliases, _extensions(tree))
    found += _cpp_findings(tree)
    if not _runs_compiled_code(tree):
        found.append(
            Finding(1, "no custom kernel: nothing is compiled with load_inline or triton.jit")
        )
    seen: set[tuple[int, str]] = set()
    unique = []
    for f in sorted(found, key=lambda f: f.line):
        if (f.line, f.trick) not in seen:
            seen.add((f.line, f.trick))
            unique.append(f)
    return unique
