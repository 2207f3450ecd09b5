# CMake helpers of the CUDA emulator (CTXDIFF_CUDA=EMU), included by the top CMakeLists.txt.
set(CX_EMU_DIR ${CMAKE_CURRENT_LIST_DIR})

# cx_emu_transform(OUT_VAR file.cu...): generated C++ copies (launches rewritten) in the
# current binary dir; OUT_VAR receives their paths.
function(cx_emu_transform out_var)
  set(gen)
  foreach(cu ${ARGN})
    get_filename_component(stem ${cu} NAME_WE)
    set(out ${CMAKE_CURRENT_BINARY_DIR}/cuda_emu/${stem}.cpp)
    add_custom_command(OUTPUT ${out}
                       COMMAND ${CMAKE_COMMAND} -DIN=${cu} -DOUT=${out} -P ${CX_EMU_DIR}/transform.cmake
                       DEPENDS ${cu} ${CX_EMU_DIR}/transform.cmake VERBATIM)
    list(APPEND gen ${out})
  endforeach()
  set(${out_var} ${gen} PARENT_SCOPE)
endfunction()

# cx_emu_compile(target): the emulator's CUDA headers (first, and cuda_runtime.h implicitly
# as nvcc does), C++17, and the sanitizers that work with fibers: array bounds (shared-memory
# indexing), alignment (misaligned vector loads), shifts and integer division.
function(cx_emu_compile target)
  target_include_directories(${target} BEFORE PRIVATE ${CX_EMU_DIR}/include)
  set_target_properties(${target} PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS ON)
  target_compile_definitions(${target} PRIVATE CTXDIFF_CUDA_EMU=1)
  target_compile_options(${target} PRIVATE -include cuda_runtime.h -Wno-unknown-pragmas -Wno-unused-function
                         -fsanitize=bounds,alignment,shift,integer-divide-by-zero -fno-sanitize-recover=all)
  target_link_options(${target} PUBLIC -fsanitize=bounds,alignment,shift,integer-divide-by-zero)
endfunction()
