/* library_types.h (tests/emu): cudaDataType_t lives in cuda_runtime_api.h here */
#include "cuda_runtime_api.h"
