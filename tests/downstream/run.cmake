# The downstream package test, run as a script by ctest:
#
#   cmake -DTANDEM_BUILD_DIR=<build> -DTANDEM_SOURCE_DIR=<src> -DWORK_DIR=<dir>
#         [-DGENERATOR=Ninja] [-DCONFIG=Release] [-DCXX_COMPILER=g++]
#         [-DSANITIZE=address,undefined]
#         -P tests/downstream/run.cmake
#
# 1. cmake --install <build> --prefix <dir>/prefix
# 2. configure tests/downstream with CMAKE_PREFIX_PATH=<dir>/prefix into <dir>/build
# 3. build it and run downstream_app.
# Any failing step stops the test with FATAL_ERROR and that step's output.
cmake_minimum_required(VERSION 3.24)

foreach(var TANDEM_BUILD_DIR TANDEM_SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run.cmake: pass -D${var}=...")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Release)
endif()

set(prefix "${WORK_DIR}/prefix")
set(build "${WORK_DIR}/build")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

# Runs a command; on failure stops with its command line and output.
function(run_step name)
  execute_process(COMMAND ${ARGN}
    RESULT_VARIABLE result
    OUTPUT_VARIABLE out
    ERROR_VARIABLE out)
  if(NOT result EQUAL 0)
    string(REPLACE ";" " " cmdline "${ARGN}")
    message(FATAL_ERROR "downstream: ${name} failed (${result})\n"
      "command: ${cmdline}\n${out}")
  endif()
  message(STATUS "downstream: ${name}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

run_step("install" "${CMAKE_COMMAND}" --install "${TANDEM_BUILD_DIR}" --prefix "${prefix}"
  --config "${CONFIG}")

set(configure_args -S "${TANDEM_SOURCE_DIR}/tests/downstream" -B "${build}"
  "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_BUILD_TYPE=${CONFIG}"
  # Only the freshly installed package may satisfy find_package(tandem).
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
if(GENERATOR)
  list(APPEND configure_args -G "${GENERATOR}")
endif()
if(CXX_COMPILER)
  list(APPEND configure_args "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}")
endif()
if(SANITIZE)
  # A library built with -fsanitize needs an app linked with the same runtime
  # (ASan insists on being loaded first).
  list(APPEND configure_args "-DCMAKE_CXX_FLAGS=-fsanitize=${SANITIZE} -fno-omit-frame-pointer"
    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE}")
endif()
run_step("configure" "${CMAKE_COMMAND}" ${configure_args})
run_step("build" "${CMAKE_COMMAND}" --build "${build}" --config "${CONFIG}")

find_program(app downstream_app PATHS "${build}" "${build}/${CONFIG}" NO_DEFAULT_PATH)
if(NOT app)
  message(FATAL_ERROR "downstream: downstream_app was not built in ${build}")
endif()
run_step("run" "${app}")
message(STATUS "downstream: app output:\n${step_output}")
