// LONGHAUL_TEST_SANITIZED is defined in a build under AddressSanitizer or ThreadSanitizer (clang's
// __has_feature, gcc's __SANITIZE_*__): their allocators and shadow memory replace what some tests
// check (address-space caps, malloc's policy), and those tests skip there with the reason.
#pragma once

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LONGHAUL_TEST_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LONGHAUL_TEST_SANITIZED 1
#endif
