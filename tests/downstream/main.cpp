// Downstream smoke test: compiled against the *installed* headers and linked to
// the installed library, it runs a few ops and checks their values. Exit code 0
// means the package works; anything else prints what went wrong.
#include <tandem/tandem.h>

#include <cmath>
#include <iostream>
#include <vector>

namespace {

int failures = 0;

void expect_near(const char* what, double got, double want) {
  if (std::fabs(got - want) > 1e-9 * (1.0 + std::fabs(want))) {
    std::cerr << "downstream_app: " << what << " = " << got << ", expected " << want << "\n";
    ++failures;
  }
}

}  // namespace

int main() {
  try {
    std::cout << "tandem " << TANDEM_VERSION << " (CUDA built: " << tandem::cuda::is_built()
              << ", available: " << tandem::cuda::is_available() << ")\n";

    // [[1, 2, 3], [4, 5, 6]] @ [[1, 0], [0, 1], [1, 1]] = [[4, 5], [10, 11]]
    tandem::Tensor a = tandem::from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
    tandem::Tensor b = tandem::from_vector<double>({1, 0, 0, 1, 1, 1}, {3, 2});
    tandem::Tensor c = tandem::matmul(a, b);
    const std::vector<double> got = tandem::to_vector<double>(c);
    const std::vector<double> want = {4, 5, 10, 11};
    if (c.sizes() != tandem::Shape{2, 2} || got.size() != want.size()) {
      std::cerr << "downstream_app: matmul gave shape " << tandem::shape_str(c.sizes())
                << ", expected [2, 2]\n";
      return 1;
    }
    for (size_t i = 0; i < want.size(); ++i) expect_near("matmul element", got[i], want[i]);

    expect_near("sum(a + 1)", tandem::sum(a + 1.0).item<double>(), 27.0);
    expect_near("softmax row sum", tandem::softmax(a, 1).sum(1)[0].item<double>(), 1.0);

    // A tandem::Error must cross the library boundary as that type.
    bool threw = false;
    try {
      (void)tandem::matmul(a, a);  // [2,3] x [2,3]: shapes do not match
    } catch (const tandem::Error&) {
      threw = true;
    }
    if (!threw) {
      std::cerr << "downstream_app: matmul of mismatched shapes did not throw tandem::Error\n";
      ++failures;
    }

    if (failures != 0) return 1;
    std::cout << "downstream_app: OK\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "downstream_app: unexpected exception: " << e.what() << "\n";
    return 1;
  }
}
