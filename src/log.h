/* Logging: silent unless CLATTN_LOG names a level or a callback is set. */
#ifndef CLATTN_LOG_H
#define CLATTN_LOG_H

#include "status.h"

/* Send one line at level (CLATTN_LOG_ERROR .. CLATTN_LOG_DEBUG) to the callback, or to stderr
   when CLATTN_LOG lets that level through. */
void clattn_log(int level, const char *fmt, ...) CLATTN_PRINTF(2, 3);

#endif
