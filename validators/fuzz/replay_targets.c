/*
 * The route name fuzzers' part of the replay (replay.c): their corpus
 * and crashers, and both targets on every input.
 */

#include <stddef.h>
#include <stdint.h>


int route_name_fuzz_input(const uint8_t *data, size_t size);
int route_name_pcre_fuzz_input(const uint8_t *data, size_t size);
void replay_input(const uint8_t *data, size_t size);


char  *replay_dirs[] = {
    "validators/fuzz/corpus", "validators/fuzz/crashers", NULL
};


void
replay_input(const uint8_t *data, size_t size)
{
    route_name_fuzz_input(data, size);
    route_name_pcre_fuzz_input(data, size);
}
