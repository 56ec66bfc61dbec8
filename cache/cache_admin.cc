#include "cache/cache_admin.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>

#include "cache/hash.h"
#include "common/file_util.h"

namespace modelfs {
namespace {

std::vector<std::string> ListDir(const std::string& path) {
  std::vector<std::string> out;
  DIR* d = opendir(path.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') out.push_back(e->d_name);
  closedir(d);
  return out;
}

// Inverse of meta_store.cc's Component(): %XX back to the byte; "%" alone is the empty name.
std::string Decode(const std::string& s) {
  if (s == "%") return "";
  std::string out;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == '%' && i + 2 < s.size() && isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

}  // namespace

uint64_t CachedBlobCharge(const CachedBlob& blob) {
  return (blob.summary.present_bytes + 4095) / 4096 * 4096;
}

std::vector<CachedBlob> ListCachedBlobs(const std::string& cache_dir) {
  std::vector<CachedBlob> out;
  std::string root = cache_dir + "/blobs";
  for (const auto& sub : ListDir(root)) {
    for (const auto& name : ListDir(root + "/" + sub)) {
      if (name.size() < 5 || name.compare(name.size() - 4, 4, ".idx") != 0) continue;
      CachedBlob b;
      b.key = name.substr(0, name.size() - 4);
      b.base = root + "/" + sub + "/" + b.key;
      if (!BlockFile::Peek(b.base + ".idx", &b.summary)) continue;
      struct stat st;
      if (stat((b.base + ".idx").c_str(), &st) == 0) b.last_use = st.st_mtime;
      out.push_back(std::move(b));
    }
  }
  return out;
}

std::vector<StoredTree> ListStoredTrees(const std::string& cache_dir) {
  std::vector<StoredTree> out;
  std::string meta = cache_dir + "/meta";
  for (const auto& type : ListDir(meta)) {
    for (const auto& ns : ListDir(meta + "/" + type)) {
      for (const auto& name : ListDir(meta + "/" + type + "/" + ns)) {
        std::string dir = meta + "/" + type + "/" + ns + "/" + name;
        std::map<std::string, std::vector<std::string>> revs;  // commit -> revs
        for (const auto& ref : ListDir(dir + "/refs")) {
          std::string commit;
          if (ref.find(".tmp.") == std::string::npos && ReadFile(dir + "/refs/" + ref, &commit)) {
            // "%default" is the default branch (meta_store.cc); anything else is Component()-encoded.
            revs[commit].push_back(ref == "%default" ? "" : Decode(ref));
          }
        }
        for (const auto& t : ListDir(dir + "/trees")) {
          if (t.size() < 6 || t.compare(t.size() - 5, 5, ".json") != 0) continue;
          std::string text;
          if (!ReadFile(dir + "/trees/" + t, &text)) continue;
          try {
            auto j = nlohmann::json::parse(text);
            StoredTree tree;
            std::string id = j.at("repo").get<std::string>();
            size_t slash = id.rfind('/');
            tree.repo.type = j.value("type", std::string("model"));
            tree.repo.ns = slash == std::string::npos ? "" : id.substr(0, slash);
            tree.repo.name = slash == std::string::npos ? id : id.substr(slash + 1);
            // "datasets/org" style ids carry the type prefix: keep only the namespace.
            size_t tslash = tree.repo.ns.find('/');
            if (tslash != std::string::npos) tree.repo.ns = tree.repo.ns.substr(tslash + 1);
            tree.commit = j.at("commit").get<std::string>();
            tree.revs = revs[tree.commit];
            for (const auto& e : j.at("entries")) {
              if (e.at("dir").get<bool>()) continue;
              FileEntry f;
              f.path = e.at("path").get<std::string>();
              f.size = e.at("size").get<uint64_t>();
              f.git_oid = e.at("oid").get<std::string>();
              f.sha256 = e.at("sha256").get<std::string>();
              tree.files.push_back(std::move(f));
            }
            out.push_back(std::move(tree));
          } catch (const std::exception&) {
            continue;  // a torn or foreign file: PersistentHubApi refetches it when online
          }
        }
      }
    }
  }
  return out;
}

Result<VerifyOutcome> VerifyCachedBlob(const CachedBlob& blob) {
  size_t slash = blob.base.rfind('/');
  auto opened = BlockFile::Open(blob.base.substr(0, slash), blob.key, blob.summary.size);
  if (!opened.ok()) return opened.status();
  auto& f = opened.value();
  VerifyOutcome out;
  std::vector<char> buf(kBlockSize);
  for (uint32_t i = 0; i < f->num_blocks(); i++) {
    if (f->Present(i)) f->ReadBlock(i, buf.data());  // a mismatch clears the entry
  }
  out.bad_blocks = static_cast<uint32_t>(f->corrupt_blocks());
  out.complete = f->AllPresent();
  size_t dash = blob.key.find('-');
  if (!out.complete || dash == std::string::npos) return out;
  HashKind kind = blob.key.rfind("sha256-", 0) == 0 ? HashKind::kSha256 : HashKind::kGitSha1;
  FileHasher hasher(kind, f->size());
  for (uint32_t i = 0; i < f->num_blocks(); i++) {
    if (!f->ReadBlock(i, buf.data())) return out;  // changed under us: leave it for next time
    hasher.Update(buf.data(), f->BlockLen(i));
  }
  out.hash_checked = true;
  out.hash_ok = hasher.FinishHex() == blob.key.substr(dash + 1);
  if (out.hash_ok) {
    if (!f->verified()) {
      Status s = f->MarkVerified();
      if (!s.ok()) return s;
    }
  } else {
    f->DropAll();
  }
  return out;
}

uint64_t RemoveCachedBlob(const CachedBlob& blob) {
  unlink((blob.base + ".idx").c_str());
  unlink((blob.base + ".data").c_str());
  return CachedBlobCharge(blob);
}

}  // namespace modelfs
