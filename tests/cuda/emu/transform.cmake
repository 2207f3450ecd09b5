# Rewrites one kernels/cuda source for the CUDA emulator (tests/cuda/emu): the two pieces of
# CUDA syntax a C++ compiler cannot take.
#   name<<<cfg>>>(args)          -> cxemu::launch("name", name, cxemu::launch_cfg(cfg))(args)
#   extern __shared__ T name[];  -> T *name = (T *)cxemu::dyn_smem();
# Line numbers are kept (launch configurations sit on one line), and #line points compiler
# messages at the original file.  Usage: cmake -DIN=file.cu -DOUT=file.cpp -P transform.cmake
file(READ "${IN}" src)
string(REGEX REPLACE "([A-Za-z_][A-Za-z0-9_:]*(<[^<>();]*>)?)[ \t]*<<<([^>]*)>>>"
       "cxemu::launch(\"\\1\", \\1, cxemu::launch_cfg(\\3))" src "${src}")
string(REGEX REPLACE "extern[ \t]+__shared__[ \t]+([A-Za-z_][A-Za-z0-9_ ]*[A-Za-z0-9_])[ \t]+([A-Za-z_][A-Za-z0-9_]*)[ \t]*\\[\\][ \t]*;"
       "\\1 *\\2 = (\\1 *)cxemu::dyn_smem();" src "${src}")
if(src MATCHES "<<<|extern[ \t]+__shared__")
  message(FATAL_ERROR "transform.cmake: ${IN}: a launch or extern __shared__ declaration it cannot rewrite")
endif()
file(WRITE "${OUT}.tmp" "#line 1 \"${IN}\"\n${src}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
