# sam2amg: SAM 2.1 automatic mask generation, batch job runner.
# `make` builds build/sam2amg; `make test` runs every test and ends with
# "N passed, N failed"; see `make help`.

CC      ?= cc
# nvcc from PATH, else the default CUDA install location
NVCC    ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc),nvcc)
PKGS    := vips sqlite3 minizip libmicrohttpd
OPT     ?= -O2
PKG_CFLAGS := $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(PKGS) 2>/dev/null))
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -fPIC \
           -Iinclude -isystem /usr/include/x86_64-linux-gnu/openblas-pthread $(PKG_CFLAGS) $(SAN_FLAGS)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lopenblas -lpthread -ldl -lm
LDFLAGS += $(SAN_FLAGS)

BUILD   ?= build
# V=1 prints full command lines
V ?= 0
Q := $(if $(filter 1,$(V)),,@)
SRC     := $(filter-out src/main.c,$(wildcard src/*.c)) $(wildcard jobs/*.c)
OBJ     := $(patsubst %.c,$(BUILD)/obj/%.o,$(SRC))
TESTS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
BENCHES := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/bench_*.c))
# fuzz targets (tests/fuzz/fuzz_*.c): with cc and tests/fuzz/replay.c as main
# for the corpus replay of `make test`; with clang's libFuzzer for `make fuzz`
FUZZ_SRC    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz-replay/%,$(FUZZ_SRC))

# EMU=1 (with its own BUILD, e.g. `make BUILD=build-emu EMU=1`, or `make
# emu-test`): the CUDA backend built against tests/emu instead of the CUDA
# toolkit: the runtime, cuBLAS and every kernel (cu2cc.py + C++) run on the
# CPU, so the CUDA code executes here; see tests/emu/emu.h for what it does
# not model.
ifeq ($(EMU),1)
HAVE_NVCC := 0
CU_OBJ  := $(patsubst kernels/%.cu,$(BUILD)/emu/%.o,$(wildcard kernels/*.cu)) \
           $(BUILD)/emu/emu.o $(BUILD)/emu/emu_rt.o
CFLAGS  += -DSAM2AMG_CUDA -Itests/emu/include
CUDA_LINK = $(CUDA_HOST_OBJ) $(CU_OBJ) -lstdc++
CUDA_PLUGIN := $(BUILD)/libsam2amg_cuda.so
PLUGIN_LIBS := -lopenblas -lstdc++ -lpthread -lm
EMU_CXXFLAGS := $(OPT) -g -std=gnu++17 -fPIC -pthread -ffp-contract=off -Wall -Wextra -Werror \
                -Wno-unused-parameter -Wno-unknown-pragmas $(SAN_FLAGS)
endif
# CUDA: compiled when nvcc exists and src/backend_cuda.c is there (so a tree
# without the CUDA backend still links); HAVE_NVCC=0 forces a CPU-only build.
HAVE_NVCC ?= $(if $(and $(shell command -v $(NVCC) 2>/dev/null),$(wildcard src/backend_cuda.c)),1,0)
CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(shell command -v $(NVCC) 2>/dev/null)))
# The CUDA backend (src/backend_cuda.c + kernels/) is not in libsam2amg.a:
# build/sam2amg loads it as the plugin build/libsam2amg_cuda.so (src/plugin.c)
# and links no CUDA library; test and GPU programs link CUDA_LINK directly.
# Host C files that call the CUDA runtime belong in CUDA_HOST_OBJ.
CU_SRC  := $(wildcard kernels/*.cu)
CUDA_HOST_OBJ := $(BUILD)/obj/src/backend_cuda.o
CUDA_LINK ?=
PLUGIN_LIBS ?= -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 \
               -lcublasLt -lcublas -lcudart_static -lstdc++ -lrt -ldl -lpthread -lm
ifeq ($(HAVE_NVCC),1)
CU_OBJ  := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CU_SRC))
CFLAGS  += -DSAM2AMG_CUDA -isystem $(CUDA_HOME)/include
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart -lstdc++
CUDA_LINK := $(CUDA_HOST_OBJ) $(CU_OBJ) $(CUDA_LIBS)
CUDA_PLUGIN := $(BUILD)/libsam2amg_cuda.so
# sm_80 (A100) and sm_90 (H100/H200) code, plus sm_90 PTX for newer GPUs to
# JIT; warnings are errors in device and host code alike. No -lineinfo: it
# tripled the kernel objects (the GPU bundle has to fit the device tool's
# 64 MiB transfer); add it (NVFLAGS) for source-level profiles or
# compute-sanitizer reports with source lines
NVFLAGS ?= -O3 -std=c++17 -Iinclude -Xcompiler -Wall,-Wextra,-Werror,-fPIC \
           -Werror all-warnings \
           -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
           -gencode arch=compute_90,code=compute_90
endif

.PHONY: all test sanitize valgrind bench clean help gpu-bundle gpu-vips bench-gpu fuzz fuzz-build fuzz-bins soak \
        emu-test

# all: the program, the tests and the SQLite extension
SQLEXT  := $(if $(wildcard src/sqlext.c),$(BUILD)/libsam2amg_sql.so)
GPUPROGS := $(patsubst tests/gpu/%.c,$(BUILD)/gpu/%,$(wildcard tests/gpu/gpu_*.c))
all: $(BUILD)/sam2amg $(CUDA_PLUGIN) $(SQLEXT) $(TESTS) $(BENCHES) $(GPUPROGS) $(FUZZ_REPLAY)

$(BUILD)/obj/%.o: %.c $(wildcard include/*.h src/*.h src/*.inc jobs/*.h kernels/*.h schema/*.sql)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  CC    $<')
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# serve.c links in the web assets (web/*) with .incbin
$(BUILD)/obj/src/serve.o: $(wildcard web/*)

$(BUILD)/obj/%.o: %.cu $(wildcard include/*.h kernels/*.h kernels/*.cuh)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  NVCC  $<')
	$(Q)$(NVCC) $(NVFLAGS) -c $< -o $@

# the post-processing must round like src/amg.c: no contracted multiply-adds
# (the GPU bundle's object too, $(BUILD)/obj-bundle/ below)
$(BUILD)/obj/kernels/amg_post.o $(BUILD)/obj-bundle/kernels/amg_post.o: NVFLAGS += -fmad=false

$(BUILD)/libsam2amg.a: $(filter-out $(CUDA_HOST_OBJ),$(OBJ))
	@rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/sam2amg: src/main.c $(BUILD)/libsam2amg.a
	@$(if $(Q),echo '  LINK  $@')
	$(Q)$(CC) $(CFLAGS) $< $(BUILD)/libsam2amg.a -o $@ $(LDFLAGS) $(LDLIBS)

# the CUDA plugin: self-contained (-z defs), one exported entry point, the
# CUDA runtime linked in (as the GPU bundle does), so it needs only the
# driver and cuBLAS from the machine
$(BUILD)/libsam2amg_cuda.so: $(CUDA_HOST_OBJ) $(CU_OBJ) src/libsam2amg_cuda.map
	@$(if $(Q),echo '  LINK  $@')
	$(Q)$(CC) -shared -Wl,-z,defs -Wl,--version-script=src/libsam2amg_cuda.map \
	    $(filter %.o,$^) -o $@ $(LDFLAGS) $(PLUGIN_LIBS)

# EMU=1: the kernels as C++ (tests/emu/cu2cc.py), the emulator, the runtime
$(BUILD)/emu/%.cc: kernels/%.cu tests/emu/cu2cc.py
	@mkdir -p $(dir $@)
	$(Q)python3 tests/emu/cu2cc.py $< $@
$(BUILD)/emu/emu.o: tests/emu/emu.cc tests/emu/emu.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  CXX   $<')
	$(Q)$(CXX) $(EMU_CXXFLAGS) -Itests/emu -c $< -o $@
$(BUILD)/emu/emu_rt.o: tests/emu/emu_rt.c $(wildcard tests/emu/include/*.h)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  CC    $<')
	$(Q)$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/emu/%.o: $(BUILD)/emu/%.cc tests/emu/emu.h tests/emu/mma.cuh $(wildcard tests/emu/include/*.h include/*.h kernels/*.h kernels/*.cuh)
	@$(if $(Q),echo '  EMU   kernels/$*.cu')
	$(Q)$(CXX) $(EMU_CXXFLAGS) -include tests/emu/emu.h -Itests/emu -Itests/emu/include -Iinclude \
	    -Ikernels -D__CUDACC__ -D__CUDA_ARCH__=800 -c $< -o $@
# the emulator's own test (tests/test_emu.sh runs it): its kernels compiled as the kernels are
$(BUILD)/emu/test_emu_core: tests/emu/test_emu_core.cc $(BUILD)/emu/emu.o $(BUILD)/emu/emu_rt.o tests/emu/emu.h tests/emu/mma.cuh tests/test.h
	@$(if $(Q),echo '  EMU   $<')
	$(Q)$(CXX) $(EMU_CXXFLAGS) -include tests/emu/emu.h -Itests/emu -Itests/emu/include -Itests \
	    -D__CUDACC__ -D__CUDA_ARCH__=800 $< $(BUILD)/emu/emu.o $(BUILD)/emu/emu_rt.o -o $@ \
	    -lopenblas -lpthread

# the rle_* SQL functions as a loadable extension for sqlite3 / Python; built
# without sanitizers, since it is loaded into programs that have none
$(BUILD)/libsam2amg_sql.so: $(wildcard src/sqlext*.c src/rle.c)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  LINK  $@')
	$(Q)$(CC) $(filter-out $(SAN_FLAGS),$(CFLAGS)) -DSAM2AMG_SQL_EXTENSION -shared $^ -o $@ -lm

$(BUILD)/tests/%: tests/%.c $(wildcard tests/*.h) $(BUILD)/libsam2amg.a $(CU_OBJ) $(if $(CU_OBJ),$(CUDA_HOST_OBJ))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  LINK  $@')
	$(Q)$(CC) $(CFLAGS) $< $(BUILD)/libsam2amg.a -o $@ $(LDFLAGS) $(CUDA_LINK) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c $(BUILD)/libsam2amg.a $(CU_OBJ) $(if $(CU_OBJ),$(CUDA_HOST_OBJ))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  LINK  $@')
	$(Q)$(CC) $(CFLAGS) $< $(BUILD)/libsam2amg.a -o $@ $(LDFLAGS) $(CUDA_LINK) $(LDLIBS)

# the GPU check's drivers (tests/gpu/gpu_*.c), linked like the tests
$(BUILD)/gpu/%: tests/gpu/%.c $(BUILD)/libsam2amg.a $(CU_OBJ) $(if $(CU_OBJ),$(CUDA_HOST_OBJ))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  LINK  $@')
	$(Q)$(CC) $(CFLAGS) $< $(BUILD)/libsam2amg.a -o $@ $(LDFLAGS) $(CUDA_LINK) $(LDLIBS)

# gpu-bundle: the programs tests/gpu/check.sh runs on a GPU machine that has
# only the CUDA toolkit and a C library, in $(BUNDLE)/ (git-ignored, carried
# to the device): one shared library lib/libsam2amg_gpu.so (the library
# without the SQLite store and the job runner, tests/gpu/mini_blas.c for
# OpenBLAS and tests/gpu/vips_stub.c for libvips, the CUDA runtime linked
# in; libminizip and libz copied beside it) and small programs in bin/ that
# find them by rpath; cuBLAS comes from the machine's CUDA 13 toolkit.
# The libvips stand-in is its own library, lib/libvips.so.42 (the soname
# of the real one), and the rpaths are RUNPATHs: on the GPU machine a real
# libvips found first on LD_LIBRARY_PATH replaces it (`make gpu-vips`), so
# the same programs decode JPEG and PNG there
BUNDLE  ?= gpu-bundle
comma   := ,
BUNDLE_SRCS := tests/test_ops.c tests/test_cuda.c tests/test_model.c tests/test_amg.c tests/test_decoder.c \
               bench/bench_cuda.c $(wildcard tests/gpu/gpu_*.c)
# The bundle's kernels are built for the device tool's GPUs only (H100 and
# H200: sm_90 code, no sm_80 code and no PTX), half the size of the
# build's: the transfer's headroom (tests/gpu/transfer.sh)
BUNDLE_ARCH ?= -gencode arch=compute_90,code=sm_90
# (EMU=1: the emulated kernels and runtime, as before)
BUNDLE_CU_OBJ := $(if $(filter 1,$(HAVE_NVCC)),$(patsubst %.cu,$(BUILD)/obj-bundle/%.o,$(CU_SRC)),$(CU_OBJ))
BUNDLE_OBJ  := $(filter-out $(BUILD)/obj/src/store.o $(BUILD)/obj/src/sqlext.o $(BUILD)/obj/src/serve.o $(BUILD)/obj/src/faultvfs.o $(BUILD)/obj/jobs/%,$(OBJ)) \
               $(BUNDLE_CU_OBJ) $(BUILD)/gpu/mini_blas.o
$(BUILD)/obj-bundle/%.o: %.cu $(wildcard include/*.h kernels/*.h kernels/*.cuh)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  NVCC  $< (bundle: $(BUNDLE_ARCH))')
	$(Q)$(NVCC) $(filter-out -gencode arch=%,$(NVFLAGS)) $(BUNDLE_ARCH) -c $< -o $@
BUNDLE_RPATH := -Wl,--enable-new-dtags -Wl,-rpath,'$$ORIGIN/../lib' $(if $(filter 1,$(HAVE_NVCC)),-Wl$(comma)-rpath$(comma)$(CUDA_HOME)/lib64)
BUNDLE_LDLIBS := -L$(BUNDLE)/lib -l:libvips.so.42 -Wl,--no-as-needed -lminizip -lz -Wl,--as-needed \
                 $(if $(filter 1,$(HAVE_NVCC)),-L$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart_static -lstdc++ -lrt -ldl) \
                 -lpthread -lm
# the bundle's sam2amg (run, status, export...: issue 8's end-to-end run on a
# GPU machine): the store and the job runner on top of the library, SQLite
# linked in statically (the GPU machine has no libsqlite3); images as PPM
# (src/image.c decodes P6 without libvips); no `serve` (libmicrohttpd)
BUNDLE_STORE_OBJ := $(BUILD)/obj/src/store.o $(BUILD)/obj/src/sqlext.o $(BUILD)/gpu/serve_stub.o \
                    $(BUILD)/obj/src/faultvfs.o \
                    $(filter $(BUILD)/obj/jobs/%,$(OBJ))
BUNDLE_SQLITE ?= $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libsqlite3.a /usr/lib/libsqlite3.a) -lsqlite3)
$(BUILD)/gpu/mini_blas.o: tests/gpu/mini_blas.c include/check.h
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -O3 -c $< -o $@
$(BUILD)/gpu/serve_stub.o: tests/gpu/serve_stub.c include/serve.h include/cli.h
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/gpu/libvips.so.42: tests/gpu/vips_stub.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -shared -Wl,-soname,libvips.so.42 $< -o $@
gpu-bundle: $(BUNDLE_OBJ) $(BUNDLE_STORE_OBJ) $(BUILD)/gpu/gpu_generate $(BUILD)/gpu/libvips.so.42
	@rm -rf $(BUNDLE) && mkdir -p $(BUNDLE)/bin $(BUNDLE)/lib
	$(Q)cp $(BUILD)/gpu/libvips.so.42 $(BUNDLE)/lib/
	@echo '  LINK  $(BUNDLE)/lib/libsam2amg_gpu.so'
	$(Q)$(CC) -shared -Wl,-z,defs $(BUNDLE_OBJ) -o $(BUNDLE)/lib/libsam2amg_gpu.so \
	    $(LDFLAGS) $(BUNDLE_LDLIBS) $(BUNDLE_RPATH)
	$(Q)strip --strip-debug $(BUNDLE)/lib/libsam2amg_gpu.so
	$(Q)for src in $(BUNDLE_SRCS); do n=$$(basename $$src .c); echo "  LINK  $(BUNDLE)/bin/$$n"; \
	    $(CC) $(CFLAGS) $$src -o $(BUNDLE)/bin/$$n $(LDFLAGS) -L$(BUNDLE)/lib -lsam2amg_gpu \
	        $(BUNDLE_RPATH) -lpthread -lm || exit 1; done
	@echo '  LINK  $(BUNDLE)/bin/sam2amg'
	$(Q)$(CC) $(CFLAGS) src/main.c $(BUNDLE_STORE_OBJ) -o $(BUNDLE)/bin/sam2amg $(LDFLAGS) \
	    -L$(BUNDLE)/lib -lsam2amg_gpu $(BUNDLE_SQLITE) $(BUNDLE_RPATH) -lpthread -lm -ldl
	$(Q)BUILD=$(BUILD) HAVE_NVCC=$(HAVE_NVCC) NVCC=$(NVCC) BUNDLE_ARCH="$(BUNDLE_ARCH)" bash tests/gpu/make_bundle.sh $(BUNDLE)

# gpu-vips: a real libvips to carry beside the bundle (tests/gpu/make_vips.sh:
# pyvips-binary's from PyPI), so that the GPU machine's runs decode JPEG
gpu-vips: $(BUILD)/gpu/gpu_generate
	$(Q)BUILD=$(BUILD) bash tests/gpu/make_vips.sh gpu-vips

# bench-gpu (a GPU machine with the build dependencies): the CUDA kernel
# harness, the full-size model timings, ours and the official generator side
# by side, and issue 8's end-to-end `run` over 200 JPEG images with the
# official loop beside it: tests/gpu/check.sh's steps model, bench and run
# on this build (the bench step's model timings are the ones step model
# measured: without it, bench_model is a SKIP), summary in
# $(BUILD)/bench-gpu/summary.txt
bench-gpu: all $(BUILD)/bench/bench_cuda $(BUILD)/gpu/gpu_model $(BUILD)/gpu/gpu_generate
	SAM2AMG_CHECK_STEPS="model bench run" SAM2AMG_CHECK_BUDGET=$${SAM2AMG_CHECK_BUDGET:-1800} \
	    BUILD=$(BUILD) bash tests/gpu/check.sh --build $(BUILD)/bench-gpu

$(BUILD)/fuzz-replay/%: tests/fuzz/%.c tests/fuzz/replay.c $(wildcard tests/fuzz/*.h) $(BUILD)/libsam2amg.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  LINK  $@')
	$(Q)$(CC) $(CFLAGS) -Ijobs -Itests/fuzz $< tests/fuzz/replay.c $(BUILD)/libsam2amg.a -o $@ $(LDFLAGS) $(LDLIBS)

# fuzz: every fuzz target under libFuzzer+ASan+UBSan (clang) for FUZZ_SECONDS
# each, corpus in build-fuzz/corpus/, crashes in build-fuzz/crashes/
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_BIN     := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
fuzz-build:
	$(MAKE) BUILD=build-fuzz CC=$(FUZZ_CC) HAVE_NVCC=0 OPT=-O1 \
	    SAN_FLAGS="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" fuzz-bins
fuzz-bins: $(FUZZ_BIN)
$(BUILD)/fuzz/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) $(BUILD)/libsam2amg.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo '  FUZZ  $@')
	$(Q)$(CC) $(CFLAGS) -fsanitize=fuzzer -Ijobs -Itests/fuzz $< $(BUILD)/libsam2amg.a -o $@ $(LDFLAGS) $(LDLIBS)
fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh

# soak: 20,000 images (1% bad) through `run` with two workers and SIGKILLs;
# RSS, fds and images/s reported (SOAK_IMAGES, SOAK_KILLS, SOAK_KILL_S)
soak: $(BUILD)/sam2amg
	@BUILD=$(BUILD) python3 tests/soak.py

# test: every tests/test_* program and script; last line "N passed, N failed"
test: all
	@BUILD=$(BUILD) bash tests/run.sh

# sanitize: the tests under ASan+UBSan (SANITIZER=address,undefined by default)
SANITIZER ?= address,undefined
sanitize:
	$(MAKE) BUILD=build-san HAVE_NVCC=0 OPT=-O1 SAN_FLAGS="-fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all" test

# emu-test: the CUDA backend run on the CPU (tests/emu; tests/test_emu.sh,
# which `make test` runs too): every op, the model, the post-processing,
# generate and run on an emulated cuda:0
emu-test:
	@bash tests/test_emu.sh

# valgrind: the C tests under valgrind memcheck (errors are failures)
valgrind: all
	@BUILD=$(BUILD) VALGRIND=1 bash tests/run.sh

# bench: the benchmarks; numbers for the README table
bench: all
	@BUILD=$(BUILD) bash bench/run.sh

# clean: remove build outputs
clean:
	rm -rf build build-san build-fuzz build-emu

# help: list the targets
help:
	@awk '/^[a-z][a-z-]*:/ { t[substr($$1, 1, index($$1, ":") - 1)] = 1 } { l[NR] = $$0 } \
	    END { for (i = 1; i <= NR; i++) if (match(l[i], /^# [a-z][a-z-]*:/) && \
	          substr(l[i], 3, RLENGTH - 3) in t) print substr(l[i], 3) }' Makefile
