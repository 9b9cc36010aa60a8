// The one list of expected skips: which test may skip, when, and why.
//   TANDEM_EXPECTED_SKIP("Suite.Name", WHEN, "reason")
// "Suite.Name" is a glob ('*': any run of characters) over gtest's full name
// (parameterised: "Prefix/Suite.Name/param"); WHEN is a tt::SkipWhen
// (tests/test_util.h). A test skips only through TANDEM_SKIP_IF(WHEN, ...),
// and only where an entry here matches it: any other skip fails. Read by
// tests/test_util.h (compiled into every test program), tools/gpu/steps.py (the
// GPU check's report allows the CudaPresent entries, and nothing else) and
// tests/test_expected_skips.py (ctest expected_skips: each entry names a test
// that has a TANDEM_SKIP_IF for it, each TANDEM_SKIP_IF has an entry, and no
// test or script skips any other way). One entry a line.
// clang-format off
TANDEM_EXPECTED_SKIP("*", NoCuda, "a CUDA test in a CPU-only build or without a device; a failure under TANDEM_REQUIRE_CUDA=1")
TANDEM_EXPECTED_SKIP("ErrorTest.CudaTensorWithoutADevice", CudaPresent, "checks the errors of CUDA requests without a device")
TANDEM_EXPECTED_SKIP("ErrorTest.StreamsWithoutADevice", CudaPresent, "checks the errors of stream calls without a device")
TANDEM_EXPECTED_SKIP("ConvCuda.BatchBeyondTwoToThe31ElementsRunsInChunks", Emulated, "its 2.2e9-element tensors need about 40 GB of host memory under the emulated device")
TANDEM_EXPECTED_SKIP("ConvCuda.BatchBeyondTwoToThe31ElementsRunsInChunks", SmallDevice, "needs about 40 GB of free device memory (an 80 GB H100 has it; the GPU report counts this skip as a failure)")
TANDEM_EXPECTED_SKIP("HostAllocator.OutOfMemoryReleasesTheCacheThenThrows", Asan, "AddressSanitizer aborts on an impossible allocation unless ASAN_OPTIONS has allocator_may_return_null=1")
TANDEM_EXPECTED_SKIP("Emu.HostCodeReadingDeviceMemoryFaults", Asan, "under ASan the emulated device memory is heap memory, so a host read does not fault (ASan checks the kernels' accesses instead)")
TANDEM_EXPECTED_SKIP("SerializeTest.ThePythonReferenceReaderReadsOurFiles", NoPython, "the reference reader is tests/safetensors_ref.py")
// clang-format on
