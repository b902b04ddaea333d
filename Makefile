# uniformaly - plain Makefile.
#   make            libraries (build/libuniformaly.a, build/libuniformaly.so.*) and the CLI
#   make install    CLI, libraries, header, pkg-config file, man page, Python module and the
#                   bundled backbone (share/uniformaly) into
#                   $(DESTDIR)$(PREFIX) (PREFIX=/usr/local); make uninstall removes them
#   make test       build and run the test suite (no network, no PyTorch needed)
#   make asan       the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make tsan       the multi-threaded tests under ThreadSanitizer
#   make bench      speed figures beside PyTorch and ONNX Runtime (see bench/README.md)
#   make bench-detector  only the detector part of make bench (kNN, coreset, fit, predict)
#   make bench-serve     only the service load test of make bench (uniformaly serve)
#   make golden     regenerate every committed golden file (needs python3-torch,
#                   -torchvision, -scipy, -sklearn, -pil, -matplotlib and ../shared)

CC      ?= cc
# Portable by default: baseline x86-64, so the binary runs on any x86-64 CPU; the hot
# kernels (src/kernels/) are compiled for each instruction-set level and chosen at run
# time (see src/kernels/kern.h). `make NATIVE=1` tunes the rest for this machine too.
ifeq ($(NATIVE),1)
OPT     ?= -O2 -march=native
else
OPT     ?= -O2
endif
CFLAGS  ?= $(OPT) -g
WARN     = -Wall -Wextra -Wshadow -Wno-unused-parameter
BLASDIR  = /usr/lib/x86_64-linux-gnu/openblas-openmp
BLASINC  = /usr/include/x86_64-linux-gnu/openblas-openmp
# The library and white-box tests see src/ (private headers as "core/internal.h", ...);
# the CLI sees only the public header (TOOLFLAGS), so it cannot reach private code.
PUBFLAGS = -Iinclude -I$(BLASINC) -D_GNU_SOURCE
CPPFLAGS = $(PUBFLAGS) -Isrc
ALLCFLAGS = -std=c11 $(WARN) -fopenmp $(CFLAGS) $(CPPFLAGS)
TOOLFLAGS = -std=c11 $(WARN) -fopenmp $(CFLAGS) $(PUBFLAGS)
LDLIBS   = -L$(BLASDIR) -Wl,-rpath,$(BLASDIR) -lopenblas -lpng -ldeflate -ljpeg -lcjson -lcrypto -lz -lm -fopenmp -lpthread

BUILD   ?= build
# src/<stage>/<file>.c: core, io, model, detector, eval (see ARCHITECTURE.md)
SRC      = $(sort $(wildcard src/*/*.c))
OBJ      = $(SRC:src/%.c=$(BUILD)/obj/%.o)
LIB      = $(BUILD)/libuniformaly.a
# The shared library: libuniformaly.so.<major> is its SONAME; the version comes from the
# header. Library objects are position-independent and hidden by default: only what
# include/uniformaly.h declares (inside its "visibility default" region) is exported.
LIBOBJFLAGS = -fPIC -fvisibility=hidden
VERSION  = $(shell sed -n 's/^\#define UF_VERSION_STRING "\(.*\)"/\1/p' include/uniformaly.h)
SOMAJOR  = $(firstword $(subst ., ,$(VERSION)))
SONAME   = libuniformaly.so.$(SOMAJOR)
SOLIB    = $(BUILD)/libuniformaly.so.$(VERSION)
# The CLI: main() in tools/main.c; everything else (the verbs, option parsing, image lists,
# the demo dataset) goes into an internal archive that the program, the CLI fuzz harness and
# the tests link, so no test or harness compiles a tools/ source into itself.
CLI_SRC  = $(filter-out tools/main.c,$(sort $(wildcard tools/*.c)))
CLI_OBJ  = $(CLI_SRC:tools/%.c=$(BUILD)/cliobj/%.o)
CLILIB   = $(BUILD)/libufcli.a
CLI_HDRS = $(wildcard tools/*.h)
TESTS_SRC = $(sort $(wildcard tests/test_*.c))
TESTS    = $(TESTS_SRC:tests/%.c=$(BUILD)/tests/%) $(sort $(wildcard tests/test_*.sh))
BIN     ?= uniformaly
# Debian's python3 (the Python package's tests, make install's module folder); not a
# pyenv or other python3 found first on PATH
PYTHON  ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
HDRS     = include/uniformaly.h $(wildcard src/*/*.h)

.PHONY: all test asan tsan bench bench-detector bench-serve golden golden-list clean install uninstall
all: $(BIN) $(SOLIB)

$(BUILD)/obj/%.o: src/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(LIBOBJFLAGS) -c $< -o $@

# Kernel files start from the baseline whatever OPT says (each adds its own level with
# `#pragma GCC target`), so the generic and avx2 tables never hold wider instructions.
$(BUILD)/obj/kernels/%.o: src/kernels/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $(LIBOBJFLAGS) -march=x86-64 -mtune=generic -c $< -o $@

$(LIB): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

# -z defs: every symbol the library uses must come from the libraries named here
$(SOLIB): $(OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,-z,defs -fopenmp $(CFLAGS) $^ $(LDLIBS) -o $@
	ln -sf $(notdir $@) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libuniformaly.so

# CLI objects see the public header only (TOOLFLAGS)
$(BUILD)/cliobj/%.o: tools/%.c include/uniformaly.h $(CLI_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(TOOLFLAGS) -c $< -o $@

$(CLILIB): $(CLI_OBJ)
	@rm -f $@
	ar rcs $@ $^

# the program alone links libmicrohttpd (serve; nothing else in libufcli.a needs it)
$(BIN): tools/main.c $(CLILIB) $(LIB) include/uniformaly.h $(CLI_HDRS)
	$(CC) $(TOOLFLAGS) $< $(CLILIB) $(LIB) $(LDLIBS) -lmicrohttpd -o $@

# tests link the CLI archive too (test_imgout uses the demo dataset, test_fuzz_regress the
# CLI's list reader); a test that uses neither pulls nothing from it
$(BUILD)/tests/%: tests/%.c tests/harness.h tests/bytebuf.h $(CLILIB) $(LIB) $(HDRS) $(CLI_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(ALLCFLAGS) $< $(CLILIB) $(LIB) $(LDLIBS) -o $@

# OMP_WAIT_POLICY=passive: see tools/main.c (spinning OpenMP threads starve the workers
# whenever the machine is shared); the CLI sets it itself, test binaries get it here.
test: $(TESTS) $(BIN) $(SOLIB)
	OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-passive} UF_BIN=$(abspath $(BIN)) UF_TEST_DIR=$(abspath $(BUILD)/tests) UF_BUILD=$(BUILD) \
	  UF_PYTHON=$(PYTHON) \
	  ./tests/run_tests.sh $(TESTS)

# Sanitizer build in its own tree; leaks are reported too (LeakSanitizer).
asan:
	$(MAKE) test BUILD=build-asan BIN=build-asan/uniformaly \
	  OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDFLAGS_EXTRA=
	@echo "asan: done"

# ThreadSanitizer build in its own tree (issue 5): the tests that call the library from
# several pthreads at once (8 threads scoring one loaded model, concurrent sessions of one
# backbone, concurrent decoding, one dataset read from many threads) plus the fork/kill
# test of atomic writes. libgomp and OpenBLAS are not instrumented, so their worker threads
# would show as false races: OMP_NUM_THREADS=1 (which the library's default thread count
# follows, see src/core/threads.c) and OPENBLAS_NUM_THREADS=1 keep every OpenMP region and BLAS
# call on its caller's thread, so the only concurrency left is the tests' own pthreads
# sharing one object - what must be race-free. halt_on_error: the first race report ends the
# binary before its #SUMMARY line, which run_tests.sh counts as a failure.
# allocator_may_return_null: the out-of-memory tests ask for absurd sizes on purpose.
# -Wno-format-truncation: gcc 12 with -fsanitize=thread misjudges the bounds of a
# snprintf in tests/test_image.c (a false positive the normal build does not show).
TSAN_TESTS = test_scoring test_forward test_image test_dataset test_atomic
tsan:
	$(MAKE) $(TSAN_TESTS:%=build-tsan/tests/%) BUILD=build-tsan \
	  OPT="-O1 -fno-omit-frame-pointer -fsanitize=thread -Wno-format-truncation"
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive \
	  TSAN_OPTIONS="halt_on_error=1 allocator_may_return_null=1 $${TSAN_OPTIONS:-}" \
	  ./tests/run_tests.sh $(TSAN_TESTS:%=build-tsan/tests/%)
	@echo "tsan: done"

bench: $(BIN) $(BUILD)/bench_vit $(BUILD)/bench_peak $(BUILD)/bench_detector
	./bench/run.sh; rc=$$?; ./bench/detector.sh || rc=1; BIN=$(abspath $(BIN)) ./bench/serve.sh || rc=1; exit $$rc

# Only the service load test of make bench (bench/serve.sh; loopback, bounded).
bench-serve: $(BIN)
	BIN=$(abspath $(BIN)) ./bench/serve.sh

# Only the detector part of `make bench` (kNN, coreset, fit/predict, fit memory).
bench-detector: $(BIN) $(BUILD)/bench_detector
	./bench/detector.sh

$(BUILD)/bench_detector: bench/bench_detector.c $(LIB) $(HDRS)
	$(CC) $(ALLCFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/bench_vit: bench/bench_vit.c $(LIB) $(HDRS)
	$(CC) $(ALLCFLAGS) $< $(LIB) $(LDLIBS) -o $@

# The CPU's FP32 FMA peak (the ceiling the ViT rows are compared with; bench/bench_peak.c).
$(BUILD)/bench_peak: bench/bench_peak.c
	$(CC) -std=c11 $(WARN) -fopenmp -O2 $< -o $@

# Every committed golden file, one generator per kind (tests/data/<kind>); run from the
# project root. The imagenet reference and the real-bottle detector cases read ../shared
# (UF_SHARED); legacy.pth is the one file that differs on each run (see gen_pth_fixtures.py).
GOLDEN_GEN = gen_golden gen_image_golden gen_metrics_golden gen_imgout_golden \
             gen_detector_golden gen_dataset_fixtures gen_kernel_golden gen_pth_fixtures \
             gen_imagenet_golden gen_dinov2_golden
golden:
	set -e; for g in $(GOLDEN_GEN); do echo "== $$g"; /usr/bin/python3 scripts/$$g.py; done
golden-list: # for tests/test_runner.sh: every kind of golden file has its generator here
	@echo $(GOLDEN_GEN)

clean:
	rm -rf build build-asan build-tsan $(BIN)

# ---- install (issue 14) ---------------------------------------------------------------
# make install PREFIX=/usr/local DESTDIR=   the CLI, both libraries (with the SONAME and
# development symlinks), the header, uniformaly.pc, the man page and the Python package.
# PREFIX is what the installed files refer to; DESTDIR only prefixes where they are put.
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include
MANDIR  ?= $(PREFIX)/share/man
# Debian's python3 searches $(PREFIX)/lib/python3.X/dist-packages for /usr and /usr/local
PYDIR   ?= $(PREFIX)/lib/$(shell $(PYTHON) -c 'import sys; print("python%d.%d" % sys.version_info[:2])')/dist-packages
PKGDIR  ?= $(LIBDIR)/pkgconfig
# the bundled backbone (models/, see NOTICE): the program looks in <bindir>/../share/uniformaly
DATADIR ?= $(PREFIX)/share/uniformaly
BUNDLED  = models/vit_tiny_patch16_224.fp16.safetensors
D        = $(DESTDIR)
install: $(BIN) $(LIB) $(SOLIB)
	install -d $(D)$(BINDIR) $(D)$(LIBDIR) $(D)$(INCDIR) $(D)$(PKGDIR) $(D)$(MANDIR)/man1
	install -m 755 $(BIN) $(D)$(BINDIR)/uniformaly
	install -m 644 $(LIB) $(D)$(LIBDIR)/libuniformaly.a
	install -m 755 $(SOLIB) $(D)$(LIBDIR)/$(notdir $(SOLIB))
	ln -sf $(notdir $(SOLIB)) $(D)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(D)$(LIBDIR)/libuniformaly.so
	install -m 644 include/uniformaly.h $(D)$(INCDIR)/uniformaly.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCDIR)|' \
	  -e 's|@VERSION@|$(VERSION)|' -e 's|@BLASDIR@|$(BLASDIR)|g' uniformaly.pc.in \
	  > $(D)$(PKGDIR)/uniformaly.pc
	install -m 644 man/uniformaly.1 $(D)$(MANDIR)/man1/uniformaly.1
	install -d $(D)$(DATADIR)
	install -m 644 $(BUNDLED) NOTICE $(D)$(DATADIR)/
	install -d $(D)$(PYDIR)/uniformaly
	install -m 644 python/uniformaly/*.py $(D)$(PYDIR)/uniformaly/
	echo '$(LIBDIR)' > $(D)$(PYDIR)/uniformaly/_libdir.txt

uninstall:
	rm -f $(D)$(BINDIR)/uniformaly $(D)$(LIBDIR)/libuniformaly.a \
	  $(D)$(LIBDIR)/libuniformaly.so $(D)$(LIBDIR)/$(SONAME) $(D)$(LIBDIR)/libuniformaly.so.$(VERSION) \
	  $(D)$(INCDIR)/uniformaly.h $(D)$(PKGDIR)/uniformaly.pc $(D)$(MANDIR)/man1/uniformaly.1
	rm -rf $(D)$(PYDIR)/uniformaly $(D)$(DATADIR)

# ---- fuzzing (issue 5) ----------------------------------------------------------------
# make fuzz                      build every harness fuzz/fuzz_<t>.c with libFuzzer into
#                                build-fuzz/ and run each for FUZZ_SECONDS (see fuzz/README.md)
# make fuzz FUZZ_TARGETS=image FUZZ_SECONDS=60   one target, one minute
# make fuzz-build                only build the harnesses
# The library is rebuilt with clang under ASan+UBSan and coverage instrumentation in its
# own tree; working corpora grow in build-fuzz/corpus/<t> (fuzz/corpus/<t> is only read),
# crashes land in build-fuzz/artifacts/<t>/. Findings belong in fuzz/regress/<t>/, which
# tests/test_fuzz_regress.c replays in make test / make asan.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= image pth safetensors checkpoint model dataset cli
FUZZ_BUILD    = build-fuzz
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OPT      = -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) -fsanitize=fuzzer-no-link \
                -Wno-pass-failed  # clang: "#pragma omp simd" loops left scalar at -O1
FUZZ_BINS     = $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

.PHONY: fuzz fuzz-build
# the corpus replay test compiles the harnesses in (see tests/test_fuzz_regress.c)
$(BUILD)/tests/test_fuzz_regress: $(wildcard fuzz/fuzz_*.c fuzz/*.h)

fuzz: fuzz-build
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) ./fuzz/run.sh $(FUZZ_TARGETS)

fuzz-build:
	$(MAKE) $(FUZZ_BUILD)/libuniformaly.a $(FUZZ_BUILD)/libufcli.a BUILD=$(FUZZ_BUILD) \
	  CC=$(FUZZ_CC) OPT="$(FUZZ_OPT)"
	$(MAKE) $(FUZZ_BINS)

# clang ignores the kernel files' `#pragma GCC target` (-Wunknown-pragmas): in this tree each
# gets its level as flags instead, the same instructions (chosen at run time by dispatch.c)
FUZZ_KERN = $(FUZZ_BUILD)/obj/kernels
$(FUZZ_KERN)/kern_avx2.o:   LIBOBJFLAGS += -Wno-unknown-pragmas -mavx2 -mfma
$(FUZZ_KERN)/kern_avx512.o: LIBOBJFLAGS += -Wno-unknown-pragmas -mavx2 -mfma -mavx512f \
                                           -mavx512bw -mavx512dq -mavx512vl
$(FUZZ_KERN)/kern_bf16.o:   LIBOBJFLAGS += -Wno-unknown-pragmas -mavx2 -mfma -mavx512f \
                                           -mavx512bw -mavx512dq -mavx512vl -mavx512bf16
$(FUZZ_KERN)/kern_generic.o: LIBOBJFLAGS += -Wno-unknown-pragmas

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_tensors.h $(FUZZ_BUILD)/libuniformaly.a \
                      $(FUZZ_BUILD)/libufcli.a $(HDRS) $(CLI_HDRS)
	$(FUZZ_CC) -std=c11 $(WARN) -fopenmp -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) \
	  -fsanitize=fuzzer $(CPPFLAGS) $< $(FUZZ_BUILD)/libufcli.a $(FUZZ_BUILD)/libuniformaly.a \
	  $(LDLIBS) -o $@
