// An executable that links libfewstep_ops but names none of its symbols, as
// a pipeline that only runs TorchScript containing fewstep::attention does:
// the op's schema and its CPU kernel must still be registered (the library
// is linked with --no-as-needed, so it is loaded and its static registrations run).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>

namespace {

TEST(OpsRegistration, SchemaAndCpuKernelArePresentWithoutReferencingTheLibrary) {
  const auto handle = c10::Dispatcher::singleton().findSchema({"fewstep::attention", ""});
  ASSERT_TRUE(handle.has_value()) << "fewstep::attention is not registered: libfewstep_ops was not loaded";
  EXPECT_TRUE(handle->hasKernelForDispatchKey(c10::DispatchKey::CPU));
  EXPECT_TRUE(c10::Dispatcher::singleton().findSchema({"fewstep::attention", "out"}).has_value());
  // Called by name, as the TorchScript interpreter does: softmax over one key is 1, so out = v.
  const at::Tensor q = at::randn({1, 1, 8});
  const at::Tensor v = at::randn({1, 1, 8});
  const at::Tensor out =
      handle->typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>().call(q, q, v, 0.5);
  EXPECT_TRUE(at::equal(out, v));
}

}  // namespace
