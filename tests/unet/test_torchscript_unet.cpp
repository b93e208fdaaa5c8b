// TorchScript UNet wrappers: the block-wise contract reproduces the monolithic
// forward on the same weights, and broken files give one-line errors.
#include <gtest/gtest.h>
#include <torch/headeronly/version.h>

#include <filesystem>
#include <fstream>

#include "kernels/attention.h"
#include "unet/torchscript.h"

namespace fs = std::filesystem;
using namespace fewstep;

namespace {

ModelManifest tiny(const std::string& name) { return load_manifest(fs::path(FEWSTEP_TEST_MODELS) / name); }

TEST(TorchScriptUnet, BlockwiseEqualsMonolithic) {
  ModelManifest blocks = tiny("tiny-blocks"), mono = tiny("tiny-mono");
  TorchScriptUnet ub(blocks.unet, true, nullptr), um(mono.unet, true, nullptr);
  EXPECT_EQ(ub.form(), "blocks");
  EXPECT_EQ(um.form(), "monolithic");
  EXPECT_EQ(ub.parameter_count(), um.parameter_count());
  EXPECT_GT(ub.parameter_count(), 0);
  at::NoGradGuard ng;
  at::manual_seed(1234);
  at::Tensor x = at::randn({3, 3, 16, 16});
  at::Tensor t = at::tensor({999.0f, 500.0f, 1.0f});
  at::Tensor ctx = at::randn({3, 16, 32});
  at::Tensor yb = ub.forward(x, t, ctx), ym = um.forward(x, t, ctx);
  ASSERT_EQ(yb.sizes(), x.sizes());
  // Same ops in the same order: equal up to float rounding (no reassociation).
  EXPECT_LE((yb - ym).abs().max().item<float>(), 1e-5f);
  // The output depends on the context (cross-attention is live).
  at::Tensor y2 = ub.forward(x, t, ctx * 2);
  EXPECT_GT((y2 - yb).abs().max().item<float>(), 1e-4f);
}

TEST(TorchScriptUnet, UnconditionalTakesTwoArguments) {
  ModelManifest m = tiny("tiny-uncond");
  TorchScriptUnet u(m.unet, false, nullptr);
  at::NoGradGuard ng;
  at::Tensor y = u.forward(at::randn({2, 3, 16, 16}), at::tensor({10.0f, 20.0f}), at::Tensor());
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{2, 3, 16, 16}));
}

TEST(TorchScriptUnet, CorruptFileIsOneLineModelError) {
  fs::path bad = fs::temp_directory_path() / ("fewstep-corrupt-" + std::to_string(::getpid()) + ".pt");
  std::ofstream(bad) << "this is not a zip archive";
  UnetSpec spec{bad.string(), "monolithic", 2};
  try {
    TorchScriptUnet u(spec, true, nullptr);
    FAIL();
  } catch (const ModelError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("not a loadable TorchScript file"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  fs::remove(bad);
}

// A file calling an operator that only another library registers, and a
// file claiming a newer format version (tools/export_test_model.py writes
// both): one line naming the operator, or both versions.
TEST(TorchScriptUnet, UnknownOperatorAndNewerFormatAreNamed) {
  const fs::path broken = fs::path(FEWSTEP_TEST_MODELS) / "broken";
  auto message = [](const fs::path& file) {
    try {
      load_torchscript(file.string());
    } catch (const ModelError& e) {
      return std::string(e.what());
    }
    return std::string("(loaded)");
  };
  const std::string op = message(broken / "unknown_op.pt");
  EXPECT_NE(op.find("unknown_op.pt: needs the operator thirdparty::mystery"), std::string::npos) << op;
  EXPECT_EQ(op.find('\n'), std::string::npos) << op;
  const std::string newer = message(broken / "newer_version.pt");
  EXPECT_NE(newer.find("newer_version.pt: written by a newer torch (file format version 99"), std::string::npos)
      << newer;
  EXPECT_NE(newer.find("this LibTorch " + std::to_string(TORCH_VERSION_MAJOR) + "."), std::string::npos) << newer;
  EXPECT_EQ(newer.find('\n'), std::string::npos) << newer;
}

TEST(TorchScriptUnet, BlocksFormNeedsSubmodules) {
  // The unconditional UNet has the blocks, so use the text encoder as a module without them.
  ModelManifest m = tiny("tiny-blocks");
  UnetSpec spec{m.text_encoder->file, "blocks", 2};
  try {
    TorchScriptUnet u(spec, true, nullptr);
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("no submodule 'time_embed'"), std::string::npos) << e.what();
  }
}

TEST(TorchScriptUnet, WrongChannelCountIsNamed) {
  ModelManifest m = tiny("tiny-mono");
  TorchScriptUnet u(m.unet, true, nullptr);
  at::NoGradGuard ng;
  try {
    u.forward(at::randn({1, 4, 16, 16}), at::tensor({1.0f}), at::randn({1, 16, 32}));
    FAIL();
  } catch (const ModelError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("unet.pt: the UNet's input convolution takes 3 channels but the sample has 4"),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("'in_channels'"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(TorchScriptUnet, OtherForwardFailuresQuoteOneLine) {
  ModelManifest m = tiny("tiny-mono");
  TorchScriptUnet u(m.unet, true, nullptr);
  at::NoGradGuard ng;
  try {
    u.forward(at::randn({1, 3, 16, 16}), at::tensor({1.0f}), at::randn({1, 16, 5}));  // wrong hidden size
    FAIL();
  } catch (const ModelError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("unet.pt: forward failed for sample [1, 3, 16, 16]: "), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(TextEncoder, HiddenSizeMismatchNamesField) {
  ModelManifest m = tiny("tiny-blocks");
  TextEncoderSpec spec = *m.text_encoder;
  spec.hidden_size = 64;
  TextEncoder te(spec, nullptr);
  at::NoGradGuard ng;
  try {
    te.encode(at::zeros({1, 16}, at::kLong));
    FAIL();
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("text_encoder.hidden_size"), std::string::npos) << e.what();
  }
}

}  // namespace

namespace {

// The exported UNets call SDPA from a free TorchScript function; the fused
// rewrite must reach it, and the result must stay within float rounding of
// LibTorch's attention.
TEST(FusedAttention, RewriteReachesHelperFunctionsAndKeepsTheOutput) {
  ModelManifest m = tiny("tiny-mono");
  int rewrites = 0;
  TorchScriptUnet fused(m.unet, true, [&](torch::jit::Module& mod) { rewrites = rewrite_attention(mod); });
  TorchScriptUnet native(m.unet, true, nullptr);
  EXPECT_GE(rewrites, 1);
  at::NoGradGuard ng;
  at::manual_seed(7);
  at::Tensor x = at::randn({2, 3, 16, 16}), t = at::tensor({900.0f, 20.0f}), ctx = at::randn({2, 16, 32});
  at::Tensor yf = fused.forward(x, t, ctx), yn = native.forward(x, t, ctx);
  EXPECT_LE((yf - yn).abs().max().item<float>(), 1e-4f);
}

}  // namespace
