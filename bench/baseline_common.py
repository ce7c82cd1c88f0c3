"""What the two CPU baselines (pytorch_baseline.py, numpy_baseline.py) share: which BLAS the
process loaded, and makemore's split of a names file into (context, next character) examples.
Imported by them as a sibling module (Python puts a script's own folder on its path).
"""

import ctypes
import os
import random
import re


def _mapped_files():
    """[(start, end, path)] of the files mapped into this process; the kernel gives each
    path with its symbolic links resolved (alternatives included)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/"):
                lo, hi = (int(a, 16) for a in fields[0].split("-"))
                out.append((lo, hi, os.path.realpath(fields[5].strip())))
    return out


def blas_kind(path):
    """The BLAS a shared object's path names, or None."""
    low, name = path.lower(), os.path.basename(path).lower()
    for kind, pattern in (("mkl", r"mkl"), ("openblas", r"openblas"), ("blis", r"blis"),
                          ("atlas", r"atlas")):
        if re.search(pattern, low):
            return kind
    # Debian's netlib reference BLAS is .../blas/libblas.so.3 (from the libblas3 package).
    if name.startswith(("libblas.so", "libcblas.so", "librefblas.so")):
        return "netlib reference BLAS"
    return None


def loaded_blas(declared=None):
    """{"blas", "blas_path", "reference_blas", "blas_threads", "blas_config"} for the BLAS this
    process uses. `declared` is what the library's build says it links ("openblas", "mkl",
    ...), or None when it links whatever libblas.so.3 resolves to at run time (Debian's
    builds): then the object that provides libblas.so.3's sgemm_ decides. Call it after a
    matrix product, so the BLAS is loaded and initialized."""
    maps = _mapped_files()
    path, handle = None, None
    try:
        handle = ctypes.CDLL("libblas.so.3", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        pass  # not loaded: a build with its own copy (e.g. a wheel's bundled OpenBLAS)
    if declared is None and handle is not None:
        try:
            addr = ctypes.cast(handle.sgemm_, ctypes.c_void_p).value
            path = next((p for lo, hi, p in maps if lo <= addr < hi), None)
        except AttributeError:
            pass
    if path is None:  # the first mapped object of the declared kind, or of any known kind
        kinds = [(p, blas_kind(p)) for _, _, p in maps]
        path = next((p for p, k in kinds if k and (declared is None or k == declared)), None)
    kind = blas_kind(path) if path else declared
    info = {"blas": kind or "unknown", "blas_path": path,
            "reference_blas": kind == "netlib reference BLAS"}
    # Ask the library itself how many threads it runs, and (OpenBLAS) how it was built.
    lib = None
    if path:
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        except OSError:
            pass
    if kind == "openblas" and lib is not None:
        try:
            lib.openblas_get_config.restype = ctypes.c_char_p
            info["blas_config"] = config = lib.openblas_get_config().decode()
            # The threads it splits a product over (small ones always run on one). An OpenMP
            # build follows omp_get_max_threads() (so torch.set_num_threads) at each such
            # product; openblas_get_num_threads() is only updated then, so may be stale.
            if "USE_OPENMP" in config:
                info["blas_threads"] = lib.omp_get_max_threads()
            else:
                info["blas_threads"] = lib.openblas_get_num_threads()
        except AttributeError:
            pass
    elif kind == "mkl" and lib is not None:
        try:
            info["blas_threads"] = lib.mkl_get_max_threads()
        except AttributeError:
            pass
    elif kind == "netlib reference BLAS":
        info["blas_threads"] = 1  # the reference BLAS never threads
    return info


def examples(words, block):
    """makemore's dataset: '.' is 0 and the letters from 1; the words shuffled with
    random.seed(42) and split 80/10/10; each split as lists X (contexts of `block` tokens) and
    Y (the next token). Returns (vocab size, [(X, Y) for train, val, test])."""
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0

    def build_split(ws):
        X, Y = [], []
        for w in ws:
            context = [0] * block
            for ch in w + ".":
                X.append(context)
                Y.append(stoi[ch])
                context = context[1:] + [stoi[ch]]
        return X, Y

    random.seed(42)
    words = words[:]
    random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return len(stoi), [build_split(words[:n1]), build_split(words[n1:n2]), build_split(words[n2:])]
